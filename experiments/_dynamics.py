"""What the integrator says, with no model trained: RK4's order, and Lorenz divergence.

Also the test trajectories and the growth-rate fit, which the learned
predictors (`_dynamics_predictors`) are measured with.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax import tasks


def oscillator(t, y):
    """y'' = -y as a first-order system; y = (position, velocity) `[..., 2]`."""
    return jnp.stack([y[..., 1], -y[..., 0]], axis=-1)


def rk4_final(f, y0, t_end: float, n_steps: int):
    return tasks.rk4(f, y0, t_end / n_steps, n_steps)[-1]


def fit_slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def rk4_order(config: dict) -> dict:
    """Global error at t_end against dt, for the oscillator and the pendulum (float64)."""
    t_end, steps = config["t_end"], config["rk4_steps"]
    y0 = jnp.asarray([1.0, 0.0], jnp.float64)
    exact = jnp.asarray([np.cos(t_end), -np.sin(t_end)], jnp.float64)
    pend = tasks.pendulum(damping=0.1)
    p0 = jnp.asarray([2.0, 0.0], jnp.float64)
    dts = [t_end / n for n in steps]
    osc_err = [float(jnp.linalg.norm(rk4_final(oscillator, y0, t_end, n) - exact)) for n in steps]
    reference = rk4_final(pend, p0, t_end, 16 * max(steps))
    pend_err = [float(jnp.linalg.norm(rk4_final(pend, p0, t_end, n) - reference)) for n in steps]
    return {
        "dt": dts,
        "t_end": t_end,
        "oscillator_error": osc_err,
        "pendulum_error": pend_err,
        "oscillator_slope": fit_slope(dts, osc_err),
        "pendulum_slope": fit_slope(dts, pend_err),
    }


def system_data(system: str, key, batch: int, length: int, config: dict):
    """Trajectories `[batch, length, D]` of `system` ("pendulum" or "lorenz"), float32."""
    if system == "pendulum":
        return tasks.pendulum_trajectories(key, batch, length, dt=config["pendulum_dt"])
    return tasks.lorenz_trajectories(key, batch, length, dt=config["lorenz_dt"])


def growth_rate(times, log_err, lo: float, hi: float) -> dict:
    """Slope of the mean log error against time where the mean error lies in (lo, hi].

    The growth phase starts once the error has risen above `lo` (past the
    transient where model error is being injected) and ends at `hi` (before
    the error saturates at the attractor's size). Only the first stretch
    inside the band counts.
    """
    err = np.exp(log_err)
    start = int(np.argmax(err > lo)) if np.any(err > lo) else len(err)
    above = np.nonzero(err[start:] > hi)[0]
    stop = start + (int(above[0]) if len(above) else len(err) - start)
    if stop - start < 3:
        return {"rate": float("nan"), "t_start": float("nan"), "t_stop": float("nan")}
    rate = np.polyfit(times[start:stop], log_err[start:stop], 1)[0]
    return {"rate": float(rate), "t_start": float(times[start]), "t_stop": float(times[stop - 1])}


def true_divergence(key, config: dict) -> dict:
    """Mean log distance of Lorenz trajectories started 1e-6 apart (float64 RK4)."""
    B, n = config["test_batch"], config["rollout_steps"]
    base = system_data("lorenz", key, B, 2, config)[:, 0].astype(jnp.float64)
    direction = jax.random.normal(jax.random.fold_in(key, 1), base.shape, jnp.float64)
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    f = tasks.lorenz()
    a = tasks.rk4(f, base, config["lorenz_dt"], n)
    b = tasks.rk4(f, base + config["perturbation"] * direction, config["lorenz_dt"], n)
    dist = jnp.linalg.norm(a - b, axis=-1)  # [n + 1, B]
    times = config["lorenz_dt"] * np.arange(n + 1)
    log_err = np.asarray(jnp.mean(jnp.log(dist), axis=1))
    fit = growth_rate(times, log_err, config["perturbation"] * 10, config["saturation"])
    return {"time": times, "mean_log_error": log_err, **fit}

"""Dynamical systems: RK4's order of accuracy, then RNN and LSTM one-step predictors.

Part 1. The classical Runge-Kutta integrator (`lstmjax.tasks.rk4`) is run to
a fixed time with step sizes dt, dt/2, ...; its global error falls like dt^4.
Two references: the harmonic oscillator y'' = -y (exact solution cos t,
-sin t) and the damped pendulum (against a run with a 16 times smaller step).
The fitted slope of log error against log dt is the order.

Part 2. A tanh RNN and an LSTM (each with a linear readout) read a
trajectory of a damped pendulum or of the Lorenz system, one state per
step, and predict the increment to the next state (both standardised with
training-set statistics). Measured on fresh test trajectories:

  * the one-step error (teacher forcing: the true state is read at every
    step) against the persistence baseline (next state = this state);
  * the rollout error: after a warm-up on true states, the model runs
    closed-loop, reading its own predictions, and the distance to the true
    trajectory is recorded against time. For the chaotic Lorenz system a
    small error grows like e^{lambda t}, lambda ~ 0.906 its largest Lyapunov
    exponent; the growth rate of the geometric-mean error over the growth
    phase is fitted, beside the same fit for two true trajectories started
    1e-6 apart (the integrator's own answer).

    python experiments/dynamical_system.py [--quick] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import optax
from _common import (
    Report,
    anchor,
    enable_x64,
    fmt,
    parse_args,
    progress,
    save_figure,
    save_json,
    seed_everything,
)

import lstmjax as lj
from lstmjax import losses, tasks, train

NAME = "dynamical_system"

LORENZ_LYAPUNOV = 0.906  # largest Lyapunov exponent of Lorenz (10, 28, 8/3)
CELLS: dict[str, Callable[[int], lj.Cell]] = {"rnn": lj.rnn, "lstm": lj.lstm}
COLORS = {"rnn": "C3", "lstm": "C0", "true": "k"}


# ---------------------------------------------------------------------------
# Part 1: the order of RK4
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Part 2: one-step predictors
# ---------------------------------------------------------------------------


class Model(NamedTuple):
    cell: Any  # the cell's parameters
    readout: lj.DenseParams  # [H, D]


class Scaling(NamedTuple):
    """Standardisation of states and increments (training-set statistics), each `[D]`."""

    state_mean: jax.Array
    state_std: jax.Array
    step_mean: jax.Array
    step_std: jax.Array


def scaling_of(trajectories) -> Scaling:
    """Per-coordinate mean and std of the states and of the increments, `[B, T, D]` in."""
    steps = trajectories[:, 1:] - trajectories[:, :-1]
    axes = (0, 1)
    return Scaling(
        jnp.mean(trajectories, axes),
        jnp.std(trajectories, axes),
        jnp.mean(steps, axes),
        jnp.std(steps, axes),
    )


def system_data(system: str, key, batch: int, length: int, config: dict):
    """Trajectories `[batch, length, D]` of `system` ("pendulum" or "lorenz"), float32."""
    if system == "pendulum":
        return tasks.pendulum_trajectories(key, batch, length, dt=config["pendulum_dt"])
    return tasks.lorenz_trajectories(key, batch, length, dt=config["lorenz_dt"])


def along_last(v, like):
    """Reshape `v: [D]` to `[1, ..., 1, D]` for `like` (no implicit rank promotion)."""
    return jnp.reshape(v, (1,) * (jnp.ndim(like) - 1) + jnp.shape(v))


def standardise(states, scale: Scaling):
    return (states - along_last(scale.state_mean, states)) / along_last(scale.state_std, states)


def predictor(cell: lj.Cell, readout: lj.Layer, scale: Scaling):
    """`(apply_fn, step_fn)` of the one-step predictor.

    apply_fn: `(params, states [B, T, D], carry) -> (next states [B, T, D], carry)`,
    reading true states (teacher forcing). step_fn: `(params, carry, state [B, D])
    -> (carry, next state [B, D])`, one closed-loop step.
    """

    def decode(p: Model, states, hs):
        inc = readout.apply(p.readout, hs)
        step_std, step_mean = along_last(scale.step_std, inc), along_last(scale.step_mean, inc)
        return states + inc * step_std + step_mean

    def apply_fn(p: Model, states, carry=None):
        hs, carry = lj.unroll(cell, p.cell, standardise(states, scale), carry)
        return decode(p, states, hs), carry

    def step_fn(p: Model, carry, state):
        carry, h = cell.step(p.cell, carry, standardise(state, scale))
        return carry, decode(p, state, h)

    return apply_fn, step_fn


def train_predictor(key, system: str, label: str, config: dict, scale: Scaling, bar):
    """Train `label` to predict the next state of `system`; returns params and curve."""
    cell, readout = CELLS[label](config["hidden"]), lj.dense(scale.state_mean.shape[0])
    apply_fn, step_fn = predictor(cell, readout, scale)
    k_cell, k_out, k_state, k_data = jax.random.split(key, 4)
    dim = scale.state_mean.shape[0]
    params = Model(cell.init(k_cell, dim), readout.init(k_out, cell.hidden_size))

    def loss_fn(pred, states):  # MSE of the standardised increment
        err = pred[:, :-1] - states[:, 1:]
        err = err / along_last(scale.step_std, err)
        return jnp.mean(jnp.square(err))

    schedule = optax.cosine_decay_schedule(config["learning_rate"], config["steps"], alpha=0.05)
    optimizer = optax.adam(schedule)
    step = train.train_step_fn(lambda p, s: apply_fn(p, s)[0], loss_fn, optimizer, clip_norm=1.0)

    @jax.jit
    def chunk(state):
        def body(state, _):
            k = jax.random.fold_in(k_data, state.step)
            states = system_data(system, k, config["batch"], config["train_length"], config)
            state, metrics = step(state, (states, states))
            return state, metrics["loss"]

        return jax.lax.scan(body, state, None, length=config["log_every"])

    state = train.init_state(params, optimizer, k_state)
    curve = {"step": [], "loss": []}
    for _ in range(config["steps"] // config["log_every"]):
        state, chunk_losses = chunk(state)
        curve["step"].append(int(state.step))
        curve["loss"].append(float(jnp.mean(chunk_losses)))
        bar.update(config["log_every"])
    return state.params, (apply_fn, step_fn), curve


def rollout(apply_fn, step_fn, params, states, warmup: int):
    """Warm up on `states[:, :warmup]`, then run closed-loop to the end.

    Returns the predicted states `[B, T - warmup, D]` for steps warmup..T-1.
    """
    _, carry = apply_fn(params, states[:, : warmup - 1])
    state = states[:, warmup - 1]  # the last true state read; predictions follow it

    def body(c, _):
        carry, state = c
        carry, nxt = step_fn(params, carry, state)
        return (carry, nxt), nxt

    _, path = jax.lax.scan(body, (carry, state), None, length=states.shape[1] - warmup)
    return jnp.swapaxes(path, 0, 1)


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


def evaluate(system: str, fns, params, key, config: dict) -> dict:
    """One-step and rollout errors on fresh test trajectories.

    One-step: the model reads the true trajectory (teacher forcing); its
    predictions of steps warmup..T-1 are compared with the truth, and the
    persistence forecast with the same steps. (The first steps, where the
    carry is still empty, are reported apart as `one_step_mse_cold`.)
    Rollout: warm-up on the first `warmup` true states, then closed loop.
    """
    apply_fn, step_fn = fns
    warm, horizon = config["warmup"], config[f"{system}_rollout_steps"]
    states = system_data(system, key, config["test_batch"], warm + horizon, config)
    pred, _ = jax.jit(apply_fn)(params, states)
    one_step = float(losses.mse(pred[:, warm - 1 : -1], states[:, warm:]))
    persistence = float(tasks.persistence_mse(states[:, warm - 1 :]))
    cold = float(losses.mse(pred[:, : warm - 1], states[:, 1:warm]))
    path = jax.jit(rollout, static_argnums=(0, 1, 4))(apply_fn, step_fn, params, states, warm)
    dist = jnp.linalg.norm(path - states[:, warm:], axis=-1)  # [B, horizon]
    dt = config[f"{system}_dt"]
    out = {
        "one_step_mse": one_step,
        "persistence_mse": persistence,
        "ratio": persistence / one_step,
        "one_step_mse_cold": cold,
        "time": dt * np.arange(1, horizon + 1),
        "rms_error": np.asarray(jnp.sqrt(jnp.mean(jnp.square(dist), axis=0))),
        "mean_log_error": np.asarray(jnp.mean(jnp.log(dist + 1e-12), axis=0)),
        "example_true": np.asarray(states[0, warm:]),
        "example_rollout": np.asarray(path[0]),
    }
    if system == "lorenz":
        lo = np.exp(out["mean_log_error"][0]) * config["growth_from"]
        out["growth"] = growth_rate(out["time"], out["mean_log_error"], lo, config["saturation"])
    return out


def anchors_of(order: dict, systems: dict, divergence: dict) -> list[dict]:
    rows = []
    for name in ("oscillator", "pendulum"):
        s = order[f"{name}_slope"]
        rows.append(
            anchor(f"RK4 order ({name}): log-log slope", "4 (within 3.5..4.5)", s, 3.5 <= s <= 4.5)
        )
    for system, per_cell in systems.items():
        for label, r in per_cell.items():
            rows.append(
                anchor(
                    f"{label} on {system}: persistence MSE / one-step MSE",
                    ">= 10",
                    r["ratio"],
                    r["ratio"] >= 10,
                )
            )
    lam = LORENZ_LYAPUNOV
    rate = divergence["rate"]
    rows.append(
        anchor(
            "Lorenz: growth rate of true trajectories 1e-6 apart",
            f"{lam} (within 0.7..1.1)",
            rate,
            0.7 <= rate <= 1.1,
        )
    )
    for label, r in systems.get("lorenz", {}).items():
        rate = r["growth"]["rate"]
        rows.append(
            anchor(
                f"{label}: growth rate of the Lorenz rollout error",
                f"about {lam}: within 0.5..1.5",
                rate,
                0.5 <= rate <= 1.5,
            )
        )
    return rows


def plot_order(ax, order: dict) -> None:
    dt = np.asarray(order["dt"])
    ax.loglog(
        dt,
        order["oscillator_error"],
        "o-",
        label=f"oscillator (slope {order['oscillator_slope']:.2f})",
    )
    ax.loglog(
        dt,
        order["pendulum_error"],
        "s-",
        label=f"damped pendulum (slope {order['pendulum_slope']:.2f})",
    )
    guide = order["oscillator_error"][0] * (dt / dt[0]) ** 4
    ax.loglog(dt, guide, "k:", label=r"$\propto dt^4$")
    ax.set(title=f"RK4 global error at t = {order['t_end']:g}", xlabel="dt", ylabel="error")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels would overlap
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def plot_rollout(ax, system: str, per_cell: dict, divergence: dict | None) -> None:
    for label, r in per_cell.items():
        name = f"{label} (one-step MSE {r['one_step_mse']:.2g}; "
        name += f"persistence {r['persistence_mse']:.2g})"
        ax.semilogy(r["time"], np.exp(r["mean_log_error"]), color=COLORS[label], label=name)
        if "growth" in r and np.isfinite(r["growth"]["rate"]):
            g = r["growth"]
            t = np.asarray(r["time"])
            i0 = int(np.searchsorted(t, g["t_start"]))
            fit = np.exp(r["mean_log_error"][i0] + g["rate"] * (t - g["t_start"]))
            band = (t >= g["t_start"]) & (t <= g["t_stop"])
            ax.semilogy(
                t[band],
                fit[band],
                color=COLORS[label],
                ls="--",
                lw=1,
                label=f"{label} fit: e^({g['rate']:.2f} t)",
            )
    if divergence is not None:
        ax.semilogy(
            divergence["time"],
            np.exp(divergence["mean_log_error"]),
            color="k",
            lw=1,
            label=f"true trajectories 1e-6 apart: e^({divergence['rate']:.2f} t)",
        )
    ax.set(
        title=f"{system}: closed-loop rollout error",
        xlabel="time after warm-up",
        ylabel="geometric-mean distance to the true state",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


COORDINATES = {"pendulum": ("angle", "angular velocity"), "lorenz": ("x", "y", "z")}


def plot_example(ax, system: str, r: dict, dt: float) -> None:
    true, pred = np.asarray(r["example_true"]), np.asarray(r["example_rollout"])
    t = dt * np.arange(1, len(true) + 1)
    for d, name in enumerate(COORDINATES[system]):
        ax.plot(t, true[:, d], color=f"C{d}", lw=1.5, label=f"{name}: true")
        ax.plot(t, pred[:, d], color=f"C{d}", lw=1, ls="--", label=f"{name}: LSTM rollout")
    ax.set(title=f"{system}: one test trajectory, closed-loop LSTM", xlabel="time after warm-up")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=len(COORDINATES[system]))


def plot(result: dict):
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5), layout="constrained")
    plot_order(axes[0, 0], result["rk4_order"])
    sysres, cfg = result["systems"], result["config"]
    plot_rollout(axes[0, 1], "pendulum", sysres["pendulum"], None)
    plot_rollout(axes[0, 2], "lorenz", sysres["lorenz"], result["true_divergence"])
    ax = axes[1, 0]
    for system, ls in (("pendulum", "-"), ("lorenz", "--")):
        for label, r in sysres[system].items():
            ax.semilogy(
                r["curve"]["step"],
                r["curve"]["loss"],
                color=COLORS[label],
                ls=ls,
                label=f"{label}, {system}",
            )
    ax.set(title="Training loss (standardised increment MSE)", xlabel="step", ylabel="MSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    plot_example(axes[1, 1], "pendulum", sysres["pendulum"]["lstm"], cfg["pendulum_dt"])
    plot_example(axes[1, 2], "lorenz", sysres["lorenz"]["lstm"], cfg["lorenz_dt"])
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()  # RK4's order needs float64 (its error reaches 1e-12); training asks for float32
    key = seed_everything(args.seed)
    config = {
        "t_end": 10.0,
        "rk4_steps": [25, 50, 100, 200, 400, 800],
        "pendulum_dt": 0.1,
        "lorenz_dt": 0.02,
        "hidden": 64,
        "batch": 32,
        "train_length": 128,  # rollouts run longer still: the carry must stay in range
        "steps": 2000,
        "log_every": 100,
        "learning_rate": 3e-3,
        "test_batch": 64,
        "warmup": 16,
        "pendulum_rollout_steps": 300,
        "lorenz_rollout_steps": 600,
        "rollout_steps": 600,
        "perturbation": 1e-6,
        "growth_from": 10.0,
        "saturation": 3.0,
    }
    if args.quick:
        config |= {"steps": 400, "log_every": 50, "hidden": 32, "test_batch": 16}
        config |= {"train_length": 64}
        config |= {"pendulum_rollout_steps": 100, "lorenz_rollout_steps": 300, "rollout_steps": 600}
    k_data, k_train, k_test, k_div = jax.random.split(key, 4)
    order = rk4_order(config)
    divergence = true_divergence(k_div, config)
    bar = progress(desc=NAME, total=2 * len(CELLS) * config["steps"])
    systems = {}
    for system in ("pendulum", "lorenz"):
        scale = scaling_of(system_data(system, k_data, 256, config["train_length"], config))
        systems[system] = {}
        for label in CELLS:
            bar.set_postfix_str(f"{system} {label}")
            params, fns, curve = train_predictor(k_train, system, label, config, scale, bar)
            systems[system][label] = {
                "curve": curve,
                **evaluate(system, fns, params, k_test, config),
            }
    bar.close()
    data = {
        "rk4_order": order,
        "true_divergence": divergence,
        "lyapunov_reference": LORENZ_LYAPUNOV,
        "systems": systems,
        "anchors": anchors_of(order, systems, divergence),
        "figures": [f"{NAME}.png"],
    }
    result = save_json(args, NAME, config, data)
    save_figure(plot(result), args, f"{NAME}.png")
    return result


def report(result: dict) -> Report:
    o, s = result["rk4_order"], result["systems"]
    ratios = "; ".join(
        f"{label} on {system} {fmt(r['ratio'])}x"
        for system, c in s.items()
        for label, r in c.items()
    )
    rates = ", ".join(f"{label} {fmt(r['growth']['rate'])}" for label, r in s["lorenz"].items())
    finding = (
        f"RK4 error slopes {fmt(o['oscillator_slope'])} (oscillator) and "
        f"{fmt(o['pendulum_slope'])} (pendulum); one-step error below persistence by {ratios}; "
        f"Lorenz rollout error grows at rate {rates} per unit time (true trajectories 1e-6 "
        f"apart: {fmt(result['true_divergence']['rate'])}; Lyapunov exponent "
        f"{result['lyapunov_reference']})."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

"""Trajectories of dynamical systems, integrated with classical Runge-Kutta 4.

Sequence models are often asked to predict the next state of a physical
system; these generators give such data without any download: a damped
pendulum (smooth, decaying) and the Lorenz system (chaotic).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstmjax._array_checks import check_parameter
from lstmjax._checks import check_size, jit_with_options
from lstmjax._integrators import VectorField, rk4_step
from lstmjax._typing import Array, PRNGKey

LORENZ_SIGMA = 10.0
LORENZ_RHO = 28.0
LORENZ_BETA = 8.0 / 3.0


def rk4(f: VectorField, y0: Array, dt: float, num_steps: int, *, t0: float = 0.0) -> Array:
    """Integrate dy/dt = f(t, y) from y(t0) = y0 with `num_steps` RK4 steps of `dt`.

    Runs on `jax.lax.scan`, so it is jit-able and differentiable. `f` sees the
    whole `y0` at once: a batch of states `[B, D]` is integrated in one go if
    `f` works on the last axis.

    Args:
      f: the vector field `(t, y) -> dy/dt`.
      y0: initial state `[...]`, floating point; its dtype is kept.
      dt: step size.
      num_steps: number of steps (static).
      t0: initial time.

    Returns:
      `[num_steps + 1, *y0.shape]`: y0 followed by the state after each step.
    """
    num_steps = check_size("num_steps", num_steps, 0)
    check_parameter("dt", dt, "rk4")
    check_parameter("t0", t0, "rk4")
    y0 = jnp.asarray(y0)
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        raise TypeError(f"rk4: y0 must be floating point; got {y0.dtype}.")
    h = jnp.asarray(dt, y0.dtype)
    times = jnp.asarray(t0, y0.dtype) + h * jnp.arange(num_steps, dtype=y0.dtype)

    def body(y, t):
        y = rk4_step(f, t, y, h)
        return y, y

    _, ys = jax.lax.scan(body, y0, times)
    return jnp.concatenate([y0[None], ys], axis=0)


def _advance(f: VectorField, y: Array, dt, num_steps: int) -> Array:
    """The state after `num_steps` RK4 steps from t = 0, without keeping the path."""
    dt = jnp.asarray(dt, y.dtype)

    def step(i, y):
        return rk4_step(f, dt * i.astype(y.dtype), y, dt)

    return jax.lax.fori_loop(0, num_steps, step, y)


def pendulum(damping: float = 0.1, frequency: float = 1.0) -> VectorField:
    """Vector field of a damped pendulum, state `[..., 2]` = (angle, angular velocity).

        theta' = omega
        omega' = -frequency^2 sin(theta) - damping * omega

    `frequency` is sqrt(g / L), the small-angle angular frequency.
    """
    check_parameter("damping", damping, "pendulum")
    check_parameter("frequency", frequency, "pendulum")

    def f(t, y):
        theta, omega = y[..., 0], y[..., 1]
        accel = -(frequency**2) * jnp.sin(theta) - damping * omega
        return jnp.stack([omega, accel], axis=-1)

    return f


def lorenz(
    sigma: float = LORENZ_SIGMA, rho: float = LORENZ_RHO, beta: float = LORENZ_BETA
) -> VectorField:
    """Vector field of the Lorenz (1963) system, state `[..., 3]` = (x, y, z).

        x' = sigma (y - x),   y' = x (rho - z) - y,   z' = x y - beta z

    With the defaults (10, 28, 8/3) the flow is chaotic (the butterfly attractor).
    """
    for name, value in (("sigma", sigma), ("rho", rho), ("beta", beta)):
        check_parameter(name, value, "lorenz")

    def f(t, s):
        x, y, z = s[..., 0], s[..., 1], s[..., 2]
        return jnp.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=-1)

    return f


def _parameters_of(where: str, *names: str):
    def check(arguments: dict) -> None:
        for name in names:
            check_parameter(name, arguments[name], where)

    return check


@jit_with_options(
    "batch_size",
    "length",
    "dtype",
    check=_parameters_of("pendulum_trajectories", "dt", "damping", "frequency"),
)
def pendulum_trajectories(
    key: PRNGKey,
    batch_size: int,
    length: int,
    *,
    dt: float = 0.1,
    damping: float = 0.1,
    frequency: float = 1.0,
    dtype=jnp.float32,
) -> Array:
    """Trajectories of the damped pendulum from random initial states.

    Initial angle ~ U[-0.9 pi, 0.9 pi] (large swings, well outside the linear
    regime), angular velocity ~ U[-1, 1].

    Baseline: the persistence forecast (next state = current state), whose
    MSE on the data is `persistence_mse(trajectories)`.

    Returns:
      `[B, T, 2]`, (angle, angular velocity) at t = 0, dt, ..., (T - 1) dt.
    """
    batch_size = check_size("batch_size", batch_size)
    length = check_size("length", length)
    k_theta, k_omega = jax.random.split(key)
    theta = jax.random.uniform(k_theta, (batch_size,), dtype, -0.9 * jnp.pi, 0.9 * jnp.pi)
    omega = jax.random.uniform(k_omega, (batch_size,), dtype, -1.0, 1.0)
    y0 = jnp.stack([theta, omega], axis=-1)
    path = rk4(pendulum(damping, frequency), y0, dt, length - 1)  # [T, B, 2]
    return jnp.swapaxes(path, 0, 1)


@jit_with_options(
    "batch_size",
    "length",
    "burn_in",
    "dtype",
    check=_parameters_of("lorenz_trajectories", "dt", "sigma", "rho", "beta"),
)
def lorenz_trajectories(
    key: PRNGKey,
    batch_size: int,
    length: int,
    *,
    dt: float = 0.01,
    burn_in: int = 500,
    sigma: float = LORENZ_SIGMA,
    rho: float = LORENZ_RHO,
    beta: float = LORENZ_BETA,
    dtype=jnp.float32,
) -> Array:
    """Trajectories of the Lorenz system on its attractor.

    Each initial state is (0, 0, 25) plus N(0, 5^2) noise per coordinate,
    run for `burn_in` steps (discarded) so that it settles on the attractor.
    The coordinates are O(10): scale them before feeding a network.
    Baseline: the persistence forecast, `persistence_mse(trajectories)`.

    Returns:
      `[B, T, 3]`, (x, y, z) at t = 0, dt, ..., (T - 1) dt after the burn-in.
    """
    batch_size = check_size("batch_size", batch_size)
    length = check_size("length", length)
    burn_in = check_size("burn_in", burn_in, 0)
    f = lorenz(sigma, rho, beta)
    center = jnp.asarray([0.0, 0.0, 25.0], dtype)[None, :]
    y0 = center + 5.0 * jax.random.normal(key, (batch_size, 3), dtype)
    y0 = _advance(f, y0, dt, burn_in)
    return jnp.swapaxes(rk4(f, y0, dt, length - 1), 0, 1)


def persistence_mse(trajectories: Array) -> Array:
    """MSE of the persistence forecast, the trivial one-step-ahead predictor.

    Predicting y_{t+1} = y_t needs no model; a sequence model predicting the
    next state must do better.

    Args:
      trajectories: `[B, T, D]`, T >= 2.

    Returns:
      Scalar: mean of (y[:, t + 1] - y[:, t])^2 over batch, steps and features.
    """
    if jnp.ndim(trajectories) != 3 or jnp.shape(trajectories)[1] < 2:
        raise ValueError(
            f"persistence_mse: trajectories must be [B, T, D] with T >= 2; "
            f"got {jnp.shape(trajectories)}."
        )
    return jnp.mean(jnp.square(trajectories[:, 1:] - trajectories[:, :-1]))

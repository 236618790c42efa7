"""Continuous-time (leaky rate) recurrent network, discretised by Euler or RK4."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Cell, batch_shape_tuple
from lstmjax._checks import (
    check_activation,
    check_choice,
    check_factory_options,
    check_real,
    check_size,
    check_time_constant,
    row,
)
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
)
from lstmjax.tasks import rk4_step

INTEGRATORS = ("euler", "rk4")


class CTRNNParams(NamedTuple):
    """Continuous-time RNN parameters: W_x `[I, H]`, W_h `[H, H]`, b `[H]`."""

    w_x: Array  # [input_size, hidden]
    w_h: Array  # [hidden, hidden]
    b: Array  # [hidden]


def ctrnn(
    hidden_size: int,
    tau=1.0,
    dt: float = 0.1,
    activation: Callable[[Array], Array] = jnp.tanh,
    integrator: str = "euler",
    *,
    kernel_init=default_kernel_init,
    recurrent_init=default_recurrent_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Cell:
    """Continuous-time RNN, the leaky rate network of computational neuroscience.

        tau dh/dt = -h + activation(x W_x + h W_h + b),   y = h

    (as trained on cognitive tasks by Song, Yang & Wang 2016), integrated over
    one step of length `dt` per input, the input held constant over the step:

      integrator="euler":  h_t = (1 - alpha) h_{t-1} + alpha act(x_t W_x + h_{t-1} W_h + b),
                           alpha = dt / tau (alpha = 1 is the Elman RNN);
      integrator="rk4":    one classical Runge-Kutta step of the same vector
                           field (`lstmjax.tasks.rk4_step`), four evaluations.

    Over a fixed time span the error against the exact flow falls as dt
    (Euler) and dt^4 (RK4). `tau` and `dt` change the dynamics only, never
    the parameters: a key gives the same params for any `tau`, `dt` or
    integrator. Recurrent noise (Song et al.'s sqrt(2 alpha) sigma N(0, 1)
    added to h every step) is the `state_noise` option of `lj.recurrent`
    and `lj.recurrent_dropout`, active when they get a key.

    Args:
      hidden_size: H.
      tau: the time constant, > 0: a number, or an array `[H]` (one per unit).
      dt: the step, > 0, in the units of `tau`.
      activation: a callable or a name ("tanh", "relu", "softplus", ...).
      integrator: "euler" or "rk4".
      kernel_init, recurrent_init, bias_init: initialisers of W_x `[I, H]`
        (LeCun normal), W_h `[H, H]` (orthogonal) and b `[H]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `h: [..., H]`.
    """
    H = hidden_size = check_size("hidden_size", hidden_size)
    tau = check_time_constant("tau", tau, H)
    dt = check_real("dt", dt)
    if dt <= 0:
        raise ValueError(f"dt must be > 0; got {dt!r}.")
    activation = check_activation("activation", activation)
    integrator = check_choice("integrator", integrator, INTEGRATORS)
    dtype = check_factory_options(
        dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
    )

    def init(key, input_size: int) -> CTRNNParams:
        check_size("input_size", input_size)
        kx, kh, kb = jax.random.split(key, 3)
        return CTRNNParams(
            w_x=kernel_init(kx, (input_size, H), dtype),
            w_h=recurrent_init(kh, (H, H), dtype),
            b=bias_init(kb, (H,), dtype),
        )

    def initial_carry(batch_shape=()) -> Array:
        return jnp.zeros(batch_shape_tuple(batch_shape) + (H,), dtype)

    def project(params: CTRNNParams, x: Array) -> Array:
        return x @ params.w_x + row(params.b, x)

    def recur(params: CTRNNParams, h: Array, px: Array):
        inv_tau = jnp.asarray(1.0 / tau, h.dtype)
        if inv_tau.ndim:
            inv_tau = row(inv_tau, h)

        def field(_, v):
            return (activation(px + v @ params.w_h) - v) * inv_tau

        step = jnp.asarray(dt, h.dtype)
        if integrator == "euler":
            h = h + step * field(None, h)
        else:
            h = rk4_step(field, jnp.zeros((), h.dtype), h, step)  # autonomous: t unused
        return h, h

    return Cell(
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        hidden_size=H,
        output_size=H,
        name="ctrnn" if integrator == "euler" else "ctrnn_rk4",
    )

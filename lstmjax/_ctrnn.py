"""Continuous-time (leaky rate) recurrent network, discretised by Euler or RK4."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._array_checks import check_time_constant
from lstmjax._arrays import row
from lstmjax._cell import Cell, dense_projection, zeros_state
from lstmjax._checks import (
    check_activation,
    check_choice,
    check_factory_options,
    check_real,
    check_size,
)
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
)
from lstmjax._integrators import rk4_step
from lstmjax._typing import Array, Initializer

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
      tau: the time constant, > 0: a number, or an array `[H]` (one per unit);
        concrete (a cell is built outside `jit`; a traced `tau` is refused).
      dt: the step, > 0, in the units of `tau`; concrete, like `tau`.
      activation: a callable or a name ("tanh", "relu", "softplus", ...).
      integrator: "euler" or "rk4".
      kernel_init: initialiser of W_x `[I, H]` (LeCun normal).
      recurrent_init: initialiser of W_h `[H, H]` (orthogonal).
      bias_init: initialiser of b `[H]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `h: [..., H]`.
    """
    hidden_size = check_size("hidden_size", hidden_size)
    tau = check_time_constant("tau", tau, hidden_size, what="the cell")
    dt = check_real("dt", dt, what="the cell")
    if dt <= 0:
        raise ValueError(f"dt must be > 0; got {dt!r}.")
    return CTRNNCell(
        hidden_size=hidden_size,
        # A float, or one float per unit as a tuple: hashable, so equal
        # configurations are equal cells.
        tau=float(tau) if tau.ndim == 0 else tuple(float(v) for v in tau),
        dt=dt,
        activation=check_activation("activation", activation),
        integrator=check_choice("integrator", integrator, INTEGRATORS),
        kernel_init=kernel_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        dtype=check_factory_options(
            dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
        ),
    )


@dataclasses.dataclass(frozen=True)
class CTRNNCell(Cell):
    """The CT-RNN's configuration (built by `lj.ctrnn`); carry `h: [..., H]`."""

    hidden_size: int
    tau: Union[float, tuple[float, ...]]  # one time constant, or one per unit
    dt: float
    activation: Callable[[Array], Array]
    integrator: str  # "euler" or "rk4"
    kernel_init: Initializer
    recurrent_init: Initializer
    bias_init: Initializer
    dtype: jnp.dtype

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def name(self) -> str:
        return "ctrnn" if self.integrator == "euler" else "ctrnn_rk4"

    def init(self, key, input_size: int) -> CTRNNParams:
        input_size = check_size("input_size", input_size)
        H, dtype = self.hidden_size, self.dtype
        kx, kh, kb = jax.random.split(key, 3)
        return CTRNNParams(
            w_x=self.kernel_init(kx, (input_size, H), dtype),
            w_h=self.recurrent_init(kh, (H, H), dtype),
            b=self.bias_init(kb, (H,), dtype),
        )

    def initial_carry(self, batch_shape=()) -> Array:
        return zeros_state(batch_shape, self.hidden_size, self.dtype)

    def project(self, params: CTRNNParams, x: Array) -> Array:
        return dense_projection(params, x)

    def recur(self, params: CTRNNParams, h: Array, px: Array):
        inv_tau = jnp.asarray(1.0 / np.asarray(self.tau, np.float64), h.dtype)
        if inv_tau.ndim:
            inv_tau = row(inv_tau, h)

        def field(_, v):
            return (self.activation(px + v @ params.w_h) - v) * inv_tau

        step = jnp.asarray(self.dt, h.dtype)
        if self.integrator == "euler":
            h = h + step * field(None, h)
        else:
            h = rk4_step(field, jnp.zeros((), h.dtype), h, step)  # autonomous: t unused
        return h, h

    def output(self, h: Array) -> Array:
        return h

"""Elman recurrent cell: h_t = act(x_t W_x + h_{t-1} W_h + b)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._cell import Cell, dense_projection, zeros_state
from lstmjax._checks import check_activation, check_factory_options, check_size
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
)
from lstmjax._typing import Array, Initializer


class RNNParams(NamedTuple):
    """Elman RNN parameters: W_x `[I, H]`, W_h `[H, H]`, b `[H]`."""

    w_x: Array  # [input_size, hidden]
    w_h: Array  # [hidden, hidden]
    b: Array  # [hidden]


def rnn(
    hidden_size: int,
    activation: Callable[[Array], Array] = jnp.tanh,
    *,
    kernel_init=default_kernel_init,
    recurrent_init=default_recurrent_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Cell:
    """Elman (simple) recurrent cell.

        h_t = activation(x_t W_x + h_{t-1} W_h + b),   y_t = h_t

    Args:
      hidden_size: H, the number of units.
      activation: elementwise nonlinearity, a callable or one of the names
        "tanh", "relu", "sigmoid", "gelu", "softplus", "identity" (tanh by default; `jax.nn.relu`,
        `jax.nn.sigmoid` or the identity for a linear RNN).
      kernel_init: initialiser of W_x `[I, H]` (LeCun normal).
      recurrent_init: initialiser of W_h `[H, H]` (orthogonal).
      bias_init: initialiser of b `[H]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `h: [..., H]`.
    """
    return RNNCell(
        hidden_size=check_size("hidden_size", hidden_size),
        activation=check_activation("activation", activation),
        kernel_init=kernel_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        dtype=check_factory_options(
            dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
        ),
    )


@dataclasses.dataclass(frozen=True)
class RNNCell(Cell):
    """The Elman cell's configuration (built by `lj.rnn`); carry `h: [..., H]`."""

    hidden_size: int
    activation: Callable[[Array], Array]
    kernel_init: Initializer
    recurrent_init: Initializer
    bias_init: Initializer
    dtype: Any

    name: ClassVar[str] = "rnn"  # a class attribute, not a field

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key, input_size: int) -> RNNParams:
        input_size = check_size("input_size", input_size)
        kx, kh, kb = jax.random.split(key, 3)
        H, dtype = self.hidden_size, self.dtype
        return RNNParams(
            w_x=self.kernel_init(kx, (input_size, H), dtype),
            w_h=self.recurrent_init(kh, (H, H), dtype),
            b=self.bias_init(kb, (H,), dtype),
        )

    def initial_carry(self, batch_shape=()) -> Array:
        return zeros_state(batch_shape, self.hidden_size, self.dtype)

    def project(self, params: RNNParams, x: Array) -> Array:
        return dense_projection(params, x)

    def recur(self, params: RNNParams, h: Array, px: Array):
        h = self.activation(px + h @ params.w_h)
        return h, h

    def output(self, h: Array) -> Array:
        return h

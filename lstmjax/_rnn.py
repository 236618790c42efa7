"""Elman recurrent cell: h_t = act(x_t W_x + h_{t-1} W_h + b)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Cell, batch_shape_tuple
from lstmjax._checks import check_activation, check_factory_options, check_size, row
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
)


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
      kernel_init, recurrent_init, bias_init: initialisers for W_x `[I, H]`
        (LeCun normal), W_h `[H, H]` (orthogonal) and b `[H]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `h: [..., H]`.
    """
    hidden_size = check_size("hidden_size", hidden_size)
    activation = check_activation("activation", activation)
    dtype = check_factory_options(
        dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
    )

    def init(key, input_size: int) -> RNNParams:
        check_size("input_size", input_size)
        kx, kh, kb = jax.random.split(key, 3)
        return RNNParams(
            w_x=kernel_init(kx, (input_size, hidden_size), dtype),
            w_h=recurrent_init(kh, (hidden_size, hidden_size), dtype),
            b=bias_init(kb, (hidden_size,), dtype),
        )

    def initial_carry(batch_shape=()) -> Array:
        return jnp.zeros(batch_shape_tuple(batch_shape) + (hidden_size,), dtype)

    def project(params: RNNParams, x: Array) -> Array:
        return x @ params.w_x + row(params.b, x)

    def recur(params: RNNParams, h: Array, px: Array):
        h = activation(px + h @ params.w_h)
        return h, h

    return Cell(
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        hidden_size=hidden_size,
        output_size=hidden_size,
        name="rnn",
    )

"""Jordan network: the previous *output*, not the hidden state, is fed back."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Cell, batch_shape_tuple
from lstmjax._checks import check_activation, check_factory_options, check_size, row
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
)


class JordanParams(NamedTuple):
    """Jordan network parameters: input, output-feedback and readout weights."""

    w_x: Array  # [input_size, hidden]
    w_y: Array  # [output, hidden], feedback from y_{t-1}
    b: Array  # [hidden]
    w_out: Array  # [hidden, output]
    b_out: Array  # [output]


def jordan(
    hidden_size: int,
    output_size: int,
    activation: Callable[[Array], Array] = jnp.tanh,
    output_activation: Optional[Callable[[Array], Array]] = None,
    *,
    kernel_init=default_kernel_init,
    recurrent_init=default_recurrent_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Cell:
    """Jordan (1986) recurrent network.

        h_t = activation(x_t W_x + y_{t-1} W_y + b)
        y_t = output_activation(h_t W_out + b_out)

    The carry is y_{t-1} itself: the state that travels through time is the
    network's own previous output, of size `output_size`.

    Args:
      hidden_size: H, units of the hidden layer.
      output_size: O, size of y (and of the carry).
      activation: hidden nonlinearity (tanh).
      output_activation: output nonlinearity; None is the identity.
      kernel_init: for W_x `[I, H]` and W_out `[H, O]` (LeCun normal).
      recurrent_init: for W_y `[O, H]` (orthogonal).
      bias_init: for b and b_out (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `y: [..., O]`.
    """
    hidden_size = check_size("hidden_size", hidden_size)
    output_size = check_size("output_size", output_size)
    activation = check_activation("activation", activation)
    out_act = (
        (lambda v: v)
        if output_activation is None
        else check_activation("output_activation", output_activation)
    )
    dtype = check_factory_options(
        dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
    )

    def init(key, input_size: int) -> JordanParams:
        check_size("input_size", input_size)
        kx, ky, kb, ko, kbo = jax.random.split(key, 5)
        return JordanParams(
            w_x=kernel_init(kx, (input_size, hidden_size), dtype),
            w_y=recurrent_init(ky, (output_size, hidden_size), dtype),
            b=bias_init(kb, (hidden_size,), dtype),
            w_out=kernel_init(ko, (hidden_size, output_size), dtype),
            b_out=bias_init(kbo, (output_size,), dtype),
        )

    def initial_carry(batch_shape=()) -> Array:
        return jnp.zeros(batch_shape_tuple(batch_shape) + (output_size,), dtype)

    def project(params: JordanParams, x: Array) -> Array:
        return x @ params.w_x + row(params.b, x)

    def recur(params: JordanParams, y_prev: Array, px: Array):
        h = activation(px + y_prev @ params.w_y)
        y = out_act(h @ params.w_out + row(params.b_out, h))
        return y, y

    return Cell(
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        hidden_size=hidden_size,
        output_size=output_size,
        name="jordan",
    )

"""Jordan network: the previous *output*, not the hidden state, is fed back."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._arrays import row
from lstmjax._cell import Cell, dense_projection, zeros_state
from lstmjax._checks import check_activation, check_factory_options, check_size
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
)
from lstmjax._typing import Array, Initializer


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
    return JordanCell(
        hidden_size=check_size("hidden_size", hidden_size),
        output_size=check_size("output_size", output_size),
        activation=check_activation("activation", activation),
        output_activation=(
            None
            if output_activation is None
            else check_activation("output_activation", output_activation)
        ),
        kernel_init=kernel_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        dtype=check_factory_options(
            dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
        ),
    )


@dataclasses.dataclass(frozen=True)
class JordanCell(Cell):
    """The Jordan network's configuration (built by `lj.jordan`); carry `y: [..., O]`."""

    hidden_size: int
    output_size: int
    activation: Callable[[Array], Array]
    output_activation: Optional[Callable[[Array], Array]]  # None: the identity
    kernel_init: Initializer
    recurrent_init: Initializer
    bias_init: Initializer
    dtype: jnp.dtype

    name: ClassVar[str] = "jordan"  # a class attribute, not a field

    def init(self, key, input_size: int) -> JordanParams:
        input_size = check_size("input_size", input_size)
        H, O, dtype = self.hidden_size, self.output_size, self.dtype
        kx, ky, kb, ko, kbo = jax.random.split(key, 5)
        return JordanParams(
            w_x=self.kernel_init(kx, (input_size, H), dtype),
            w_y=self.recurrent_init(ky, (O, H), dtype),
            b=self.bias_init(kb, (H,), dtype),
            w_out=self.kernel_init(ko, (H, O), dtype),
            b_out=self.bias_init(kbo, (O,), dtype),
        )

    def initial_carry(self, batch_shape=()) -> Array:
        return zeros_state(batch_shape, self.output_size, self.dtype)

    def project(self, params: JordanParams, x: Array) -> Array:
        return dense_projection(params, x)

    def recur(self, params: JordanParams, y_prev: Array, px: Array):
        h = self.activation(px + y_prev @ params.w_y)
        y = h @ params.w_out + row(params.b_out, h)
        if self.output_activation is not None:
            y = self.output_activation(y)
        return y, y

    def output(self, y: Array) -> Array:
        return y

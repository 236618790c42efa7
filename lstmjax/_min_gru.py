"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"): gates from x_t alone.

Its step is affine in the carry, h_t = (1 - z_t) h_{t-1} + z_t h~_t, so the
whole sequence has an exact parallel solution (one affine scan,
`_affine_scan.py`); `unroll(method="auto")` uses it (`linear_in_carry`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._cell import Cell, dense_projection, zeros_state
from lstmjax._checks import check_factory_options, check_size
from lstmjax._initializers import default_bias_init, default_kernel_init, gate_blocks
from lstmjax._typing import Array, Initializer


class MinGRUParams(NamedTuple):
    """minGRU parameters: `w_x [I, 2H]` (blocks z, h~) and `b [2H]`."""

    w_x: Array  # [input_size, 2*hidden], gate blocks z, h~
    b: Array  # [2*hidden], same order


def positive(v: Array) -> Array:
    """Feng et al.'s g: v + 1/2 for v >= 0, sigmoid(v) below; continuous, > 0.

    Keeps the candidate state positive, so the log-space scan applies.
    """
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


def min_gru(
    hidden_size: int,
    *,
    kernel_init=default_kernel_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Cell:
    """minGRU cell (Feng et al. 2024, the log-space version's activation).

        z_t  = sigmoid(x_t W_xz + b_z)
        h~_t = g(x_t W_xh + b_h),   g(v) = v + 1/2 (v >= 0), sigmoid(v) (v < 0)
        h_t  = (1 - z_t) h_{t-1} + z_t h~_t,   y_t = h_t

    No gate sees h_{t-1}: the step is affine in the carry.

    Args:
      hidden_size: H.
      kernel_init: initialiser of W_x `[I, 2H]` (LeCun normal per block,
        blocks z, h~).
      bias_init: initialiser of b `[2H]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell` with `linear_in_carry=True`; its carry is `h: [..., H]`.
    """
    return MinGRUCell(
        hidden_size=check_size("hidden_size", hidden_size),
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=check_factory_options(dtype, kernel_init=kernel_init, bias_init=bias_init),
    )


@dataclasses.dataclass(frozen=True)
class MinGRUCell(Cell):
    """The min_gru cell's configuration (built by `lj.min_gru`); carry `h: [..., H]`."""

    hidden_size: int
    kernel_init: Initializer
    bias_init: Initializer
    dtype: jnp.dtype

    name: ClassVar[str] = "min_gru"  # a class attribute, not a field
    linear_in_carry: ClassVar[bool] = True

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key, input_size: int) -> MinGRUParams:
        input_size = check_size("input_size", input_size)
        H, dtype = self.hidden_size, self.dtype
        kx, kb = jax.random.split(key)
        return MinGRUParams(
            w_x=gate_blocks(self.kernel_init, kx, input_size, H, 2, dtype),
            b=self.bias_init(kb, (2 * H,), dtype),
        )

    def initial_carry(self, batch_shape=()) -> Array:
        return zeros_state(batch_shape, self.hidden_size, self.dtype)

    def project(self, params: MinGRUParams, x: Array) -> Array:
        return dense_projection(params, x)

    def recur(self, params: MinGRUParams, h: Array, px: Array):
        H = self.hidden_size
        z = jax.nn.sigmoid(px[..., :H])
        h = (1.0 - z) * h + z * positive(px[..., H:])
        return h, h

    def output(self, h: Array) -> Array:
        return h

"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"): gates from x_t alone.

Its step is affine in the carry, h_t = (1 - z_t) h_{t-1} + z_t h~_t, so the
whole sequence has an exact parallel solution (one affine scan,
`_affine_scan.py`); `unroll(method="auto")` uses it (`linear_in_carry`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Cell, batch_shape_tuple
from lstmjax._checks import check_factory_options, check_size, row
from lstmjax._initializers import default_bias_init, default_kernel_init, gate_blocks


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
      kernel_init, bias_init: initialisers of W_x `[I, 2H]` (LeCun normal per
        block, blocks z, h~) and b `[2H]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell` with `linear_in_carry=True`; its carry is `h: [..., H]`.
    """
    H = check_size("hidden_size", hidden_size)
    dtype = check_factory_options(dtype, kernel_init=kernel_init, bias_init=bias_init)

    def init(key, input_size: int) -> MinGRUParams:
        check_size("input_size", input_size)
        kx, kb = jax.random.split(key)
        return MinGRUParams(
            w_x=gate_blocks(kernel_init, kx, input_size, H, 2, dtype),
            b=bias_init(kb, (2 * H,), dtype),
        )

    def initial_carry(batch_shape=()) -> Array:
        return jnp.zeros(batch_shape_tuple(batch_shape) + (H,), dtype)

    def project(params: MinGRUParams, x: Array) -> Array:
        return x @ params.w_x + row(params.b, x)

    def recur(params: MinGRUParams, h: Array, px: Array):
        z = jax.nn.sigmoid(px[..., :H])
        h = (1.0 - z) * h + z * positive(px[..., H:])
        return h, h

    return Cell(
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        hidden_size=H,
        output_size=H,
        name="min_gru",
        linear_in_carry=True,
    )

"""Gated recurrent unit (Cho et al. 2014), in both reset placements."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Cell, batch_shape_tuple
from lstmjax._checks import check_bool, check_factory_options, check_size, row
from lstmjax._gru_vjp import gru_recur
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
    gate_blocks,
)

GATES = ("r", "z", "n")  # order of the gate blocks in w_x, w_h and b


class GRUParams(NamedTuple):
    w_x: Array  # [input_size, 3*hidden], gate blocks in order r, z, n
    w_h: Array  # [hidden, 3*hidden], same order
    b: Array  # [3*hidden], same order, added to the input projection
    b_hn: Optional[Array] = None  # [hidden], inside the reset (reset_after only)


def gru(
    hidden_size: int,
    reset_after: bool = True,
    *,
    kernel_init=default_kernel_init,
    recurrent_init=default_recurrent_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Cell:
    """GRU cell.

        r_t = sigmoid(x_t W_xr + h_{t-1} W_hr + b_r)          reset gate
        z_t = sigmoid(x_t W_xz + h_{t-1} W_hz + b_z)          update gate
        reset_after=True  (cuDNN, PyTorch, Flax):
            n_t = tanh(x_t W_xn + b_n + r_t * (h_{t-1} W_hn + b_hn))
        reset_after=False (Cho et al. 2014, the lecture notes):
            n_t = tanh(x_t W_xn + b_n + (r_t * h_{t-1}) W_hn)
        h_t = z_t * h_{t-1} + (1 - z_t) * n_t,   y_t = h_t

    Update-gate convention: z_t is the share of the *old* state kept, as in
    Cho et al. (2014), PyTorch and Flax, so PyTorch weights copy across
    unchanged. Olah's blog (and the lecture notes after it) write
    h_t = (1 - z_t) h_{t-1} + z_t n_t; its z is our 1 - z, i.e. negate that
    gate's weights and bias to convert.

    Args:
      hidden_size: H.
      reset_after: where the reset gate acts (see above).
      kernel_init, recurrent_init, bias_init: initialisers of W_x `[I, 3H]`
        (LeCun normal per gate), W_h `[H, 3H]` (orthogonal per gate) and the
        biases (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `h: [..., H]`.
    """
    H = hidden_size = check_size("hidden_size", hidden_size)
    reset_after = check_bool("reset_after", reset_after)
    dtype = check_factory_options(
        dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
    )

    def init(key, input_size: int) -> GRUParams:
        check_size("input_size", input_size)
        kx, kh, kb, kn = jax.random.split(key, 4)
        return GRUParams(
            w_x=gate_blocks(kernel_init, kx, input_size, H, 3, dtype),
            w_h=gate_blocks(recurrent_init, kh, H, H, 3, dtype),
            b=bias_init(kb, (3 * H,), dtype),
            b_hn=bias_init(kn, (H,), dtype) if reset_after else None,
        )

    def initial_carry(batch_shape=()) -> Array:
        return jnp.zeros(batch_shape_tuple(batch_shape) + (H,), dtype)

    def project(params: GRUParams, x: Array) -> Array:
        return x @ params.w_x + row(params.b, x)

    def recur(params: GRUParams, h: Array, px: Array):
        # The equations above, with the hand-derived backward pass (faster
        # BPTT on XLA:CPU; see _gru_vjp.py). b_hn is None iff reset_before.
        h = gru_recur(params.w_h, params.b_hn, h, px)
        return h, h

    return Cell(
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        hidden_size=H,
        output_size=H,
        name="gru" if reset_after else "gru_reset_before",
    )

"""Gated recurrent unit (Cho et al. 2014), in both reset placements, optionally layer-normalised."""

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
from lstmjax._layer_norm import layer_norm as _ln

GATES = ("r", "z", "n")  # order of the gate blocks in w_x, w_h and b


class GRUParams(NamedTuple):
    """GRU parameters; fused gate blocks in order (r, z, n).

    `b_hn` exists only with `reset_after=True`.
    """

    w_x: Array  # [input_size, 3*hidden], gate blocks in order r, z, n
    w_h: Array  # [hidden, 3*hidden], same order
    b: Array  # [3*hidden], same order, added to the input projection
    b_hn: Optional[Array] = None  # [hidden], inside the reset (reset_after only)
    ln_gain_x: Optional[Array] = None  # [3*hidden], LN gain of x W_x (layer_norm only)
    ln_gain_h: Optional[Array] = None  # [3*hidden], LN gain of h W_h (layer_norm only)


def gru(
    hidden_size: int,
    reset_after: bool = True,
    *,
    layer_norm: bool = False,
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

    With `layer_norm=True` (reset_after only; Ba, Kiros & Hinton 2016), the
    input and recurrent pre-activations are layer-normalised separately,
    each over its whole 3H vector (`lstmjax._layer_norm`, eps 1e-5), with
    gains `ln_gain_x`, `ln_gain_h` `[3H]` (ones) and no LN bias (b and b_hn
    already add one):

        a = LN(x_t W_x; g_x) + b,   u = LN(h_{t-1} W_h; g_h)
        r_t = sigmoid(a_r + u_r),   z_t = sigmoid(a_z + u_z)
        n_t = tanh(a_n + r_t * (u_n + b_hn))

    Args:
      hidden_size: H.
      reset_after: where the reset gate acts (see above).
      layer_norm: the layer-normalised GRU above (needs reset_after=True).
      kernel_init, recurrent_init, bias_init: initialisers of W_x `[I, 3H]`
        (LeCun normal per gate), W_h `[H, 3H]` (orthogonal per gate) and the
        biases (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `h: [..., H]`.
    """
    H = hidden_size = check_size("hidden_size", hidden_size)
    reset_after = check_bool("reset_after", reset_after)
    layer_norm = check_bool("layer_norm", layer_norm)
    if layer_norm and not reset_after:
        raise ValueError(
            "gru: layer_norm=True needs reset_after=True (the recurrent pre-activation "
            "h W_h is normalised as one vector, which reset_after=False never forms); "
            "got reset_after=False."
        )
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
            ln_gain_x=jnp.ones((3 * H,), dtype) if layer_norm else None,
            ln_gain_h=jnp.ones((3 * H,), dtype) if layer_norm else None,
        )

    def initial_carry(batch_shape=()) -> Array:
        return jnp.zeros(batch_shape_tuple(batch_shape) + (H,), dtype)

    def project(params: GRUParams, x: Array) -> Array:
        xw = x @ params.w_x
        if layer_norm:
            xw = _ln(xw, params.ln_gain_x)
        return xw + row(params.b, x)

    def recur(params: GRUParams, h: Array, px: Array):
        if layer_norm:
            # Plain autodiff of the LN equations (_gru_vjp.py covers the
            # un-normalised step only).
            h = _ln_recur(params, h, px)
            return h, h
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
        name=("gru" if reset_after else "gru_reset_before") + "_ln" * layer_norm,
    )


def _ln_recur(params: GRUParams, h: Array, px: Array) -> Array:
    """The layer-normalised step (reset_after): `(h [.., H], px [.., 3H]) -> h`."""
    ar, az, an = jnp.split(px, 3, axis=-1)
    ur, uz, un = jnp.split(_ln(h @ params.w_h, params.ln_gain_h), 3, axis=-1)
    r = jax.nn.sigmoid(ar + ur)
    z = jax.nn.sigmoid(az + uz)
    n = jnp.tanh(an + r * (un + row(params.b_hn, un)))
    return z * h + (1.0 - z) * n

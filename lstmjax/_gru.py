"""Gated recurrent unit (Cho et al. 2014), in both reset placements, optionally layer-normalised."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._arrays import row
from lstmjax._cell import Cell, zeros_state
from lstmjax._checks import check_bool, check_factory_options, check_size
from lstmjax._gru_rule import gru_recur
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
    gate_blocks,
)
from lstmjax._layer_norm import layer_norm as _ln
from lstmjax._layer_norm import warn_one_input
from lstmjax._typing import Array, Initializer

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
      layer_norm: the layer-normalised GRU above (needs reset_after=True). It
        warns where LN keeps only a sign: hidden_size 1 (h W_h) and
        input_size 1 (x W_x, at `init`).
      kernel_init: initialiser of W_x `[I, 3H]` (LeCun normal per gate).
      recurrent_init: initialiser of W_h `[H, 3H]` (orthogonal per gate).
      bias_init: initialiser of the biases (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `h: [..., H]`.
    """
    hidden_size = check_size("hidden_size", hidden_size)
    reset_after = check_bool("reset_after", reset_after)
    layer_norm = check_bool("layer_norm", layer_norm)
    if layer_norm and not reset_after:
        raise ValueError(
            "gru: layer_norm=True needs reset_after=True (the recurrent pre-activation "
            "h W_h is normalised as one vector, which reset_after=False never forms); "
            "got reset_after=False."
        )
    if layer_norm and hidden_size == 1:
        warn_one_input("gru", "h_{t-1} W_h", "hidden_size")
    return GRUCell(
        hidden_size=hidden_size,
        reset_after=reset_after,
        layer_norm=layer_norm,
        kernel_init=kernel_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        dtype=check_factory_options(
            dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
        ),
    )


@dataclasses.dataclass(frozen=True)
class GRUCell(Cell):
    """The GRU's configuration (built by `lj.gru`); carry `h: [..., H]`."""

    hidden_size: int
    reset_after: bool
    layer_norm: bool
    kernel_init: Initializer
    recurrent_init: Initializer
    bias_init: Initializer
    dtype: jnp.dtype

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def name(self) -> str:
        return ("gru" if self.reset_after else "gru_reset_before") + "_ln" * self.layer_norm

    def init(self, key, input_size: int) -> GRUParams:
        input_size = check_size("input_size", input_size)
        if self.layer_norm and input_size == 1:
            warn_one_input("gru.init", "x_t W_x", "input_size")
        H, dtype, ln = self.hidden_size, self.dtype, self.layer_norm
        kx, kh, kb, kn = jax.random.split(key, 4)
        return GRUParams(
            w_x=gate_blocks(self.kernel_init, kx, input_size, H, 3, dtype),
            w_h=gate_blocks(self.recurrent_init, kh, H, H, 3, dtype),
            b=self.bias_init(kb, (3 * H,), dtype),
            b_hn=self.bias_init(kn, (H,), dtype) if self.reset_after else None,
            ln_gain_x=jnp.ones((3 * H,), dtype) if ln else None,
            ln_gain_h=jnp.ones((3 * H,), dtype) if ln else None,
        )

    def initial_carry(self, batch_shape=()) -> Array:
        return zeros_state(batch_shape, self.hidden_size, self.dtype)

    def project(self, params: GRUParams, x: Array) -> Array:
        xw = x @ params.w_x
        if self.layer_norm:
            assert params.ln_gain_x is not None  # init gives it with layer_norm
            xw = _ln(xw, params.ln_gain_x)
        return xw + row(params.b, x)

    def recur(self, params: GRUParams, h: Array, px: Array):
        # The equations above, written once in _gru_rule.py: the plain step
        # with its hand-derived derivative (faster BPTT on XLA:CPU), the
        # layer-normalised one by plain autodiff. b_hn is None iff reset_before.
        ln_gain_h = params.ln_gain_h if self.layer_norm else None
        h = gru_recur(params.w_h, params.b_hn, h, px, ln_gain_h)
        return h, h

    def output(self, h: Array) -> Array:
        return h

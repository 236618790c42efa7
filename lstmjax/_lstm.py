"""Long short-term memory cell: peepholes, layer normalisation and an output projection."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._arrays import row
from lstmjax._cell import Cell, batch_shape_tuple
from lstmjax._checks import (
    check_bool,
    check_factory_options,
    check_optional_size,
    check_real,
    check_size,
)
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_peephole_init,
    default_recurrent_init,
    gate_blocks,
)
from lstmjax._layer_norm import layer_norm as _ln
from lstmjax._layer_norm import warn_one_input, warn_two_units
from lstmjax._lstm_rule import LSTMNorm, lstm_recur
from lstmjax._typing import Array, Initializer

GATES = ("i", "f", "g", "o")  # order of the gate blocks in w_x, w_h and b


class LSTMParams(NamedTuple):
    """LSTM parameters; fused gate blocks in order (i, f, g, o).

    Optional fields are None unless the option that needs them is on.
    """

    w_x: Array  # [input_size, 4*hidden], gate blocks in order i, f, g, o
    w_h: Array  # [P, 4*hidden] (P = proj_size, or hidden without projection), same order
    b: Array  # [4*hidden], same order
    peephole: Optional[Array] = None  # [3, hidden]: rows (i, f, o); None if off
    w_proj: Optional[Array] = None  # [hidden, P], the output projection; None if off
    ln_gain_x: Optional[Array] = None  # [4*hidden], LN gain of x W_x (layer_norm only)
    ln_gain_h: Optional[Array] = None  # [4*hidden], LN gain of h W_h (layer_norm only)
    ln_gain_c: Optional[Array] = None  # [hidden], LN gain of c_t (layer_norm only)
    ln_bias_c: Optional[Array] = None  # [hidden], LN bias of c_t (layer_norm only)


class LSTMCarry(NamedTuple):
    """The LSTM carry: output `h` `[..., P]` (P = H unless projected), cell state `c` `[..., H]`."""

    h: Array  # [..., P], the output ("short-term memory"; P = hidden without projection)
    c: Array  # [..., hidden], the cell state ("long-term memory")


def lstm(
    hidden_size: int,
    peephole: bool = False,
    forget_bias: float = 1.0,
    *,
    layer_norm: bool = False,
    proj_size: Optional[int] = None,
    kernel_init=default_kernel_init,
    recurrent_init=default_recurrent_init,
    bias_init=default_bias_init,
    peephole_init=default_peephole_init,
    proj_init=default_kernel_init,
    dtype=jnp.float32,
) -> Cell:
    """LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al.).

    With z = x_t W_x + h_{t-1} W_h + b split into four gate blocks:

        i_t = sigmoid(z_i [+ p_i * c_{t-1}])      input gate
        f_t = sigmoid(z_f [+ p_f * c_{t-1}])      forget gate
        g_t = tanh(z_g)                           candidate C~_t
        c_t = f_t * c_{t-1} + i_t * g_t
        o_t = sigmoid(z_o [+ p_o * c_t])          output gate
        h_t = o_t * tanh(c_t),   y_t = h_t

    With `layer_norm=True` (Ba, Kiros & Hinton 2016, section 3.1), LN as in
    `lstmjax._layer_norm` (over the whole 4H vector, eps 1e-5):

        z   = LN(x_t W_x; g_x) + LN(h_{t-1} W_h; g_h) + b
        h_t = o_t * tanh(LN(c_t; g_c, b_c))

    the input and recurrent pre-activations normalised separately (each
    with a gain, `ln_gain_x`, `ln_gain_h` `[4H]`, initialised to 1; no LN
    bias there, as b already adds one per gate), and the new cell state
    normalised before its tanh with a gain `ln_gain_c` `[H]` (ones) and a
    bias `ln_bias_c` `[H]` (zeros). The carried c_t stays unnormalised, and
    the output-gate peephole (if on) sees the unnormalised c_t.

    With `proj_size=P` (LSTMP, Sak, Senior & Beaufays 2014; PyTorch's
    `proj_size`): h_t = (o_t * tanh(.)) W_proj with `w_proj` `[H, P]`, so
    h and y are `[..., P]` while c stays `[..., H]`, and W_h is `[P, 4H]`.

    Gate order in the fused matrices is (i, f, g, o), PyTorch's, so weights
    copy across without permutation. The bracketed peephole terms (Gers,
    Schraudolph & Schmidhuber 2002) are on only with `peephole=True`; their
    weights are diagonal (one per unit and gate, `[3, H]` rows i, f, o), as in
    Graves (2013), rather than full matrices: the cell state is fed back to
    the gates of its own unit only. The output gate sees the *new* state c_t.

    Args:
      hidden_size: H.
      peephole: add the peephole terms.
      forget_bias: added to the forget-gate bias at initialisation (1.0
        after Jozefowicz et al. 2015; 0.0 gives the plain initialisation);
        a concrete number.
      layer_norm: the layer-normalised LSTM above. It needs hidden_size >= 2
        (LN over one unit is a constant: refused) and warns where LN keeps
        only a sign: hidden_size 2 (c_t), proj_size 1 (h W_h), input_size 1
        (x W_x, at `init`).
      proj_size: P >= 1, the size of the projected output (PyTorch asks for
        P < H); None (default) for no projection.
      kernel_init: initialiser of W_x `[I, 4H]` (LeCun normal per gate).
      recurrent_init: initialiser of W_h `[P, 4H]` (orthogonal per gate).
      bias_init: initialiser of b `[4H]` (zeros).
      peephole_init: initialiser of the peephole weights `[3, H]` (zeros).
      proj_init: initialiser of W_proj `[H, P]` (LeCun normal).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `LSTMCarry(h, c)`, h `[..., P]`, c `[..., H]`
      (P = H without projection). `hidden_size` is H, `output_size` P.
    """
    hidden_size = check_size("hidden_size", hidden_size)
    layer_norm = check_bool("layer_norm", layer_norm)
    proj_size = check_optional_size("proj_size", proj_size)
    if layer_norm and hidden_size == 1:
        raise ValueError(
            "lstm: layer_norm=True normalises the cell state c_t over its hidden_size units; "
            "with hidden_size=1 LN(c_t) is always the LN bias ln_bias_c, so h_t = o_t * "
            "tanh(ln_bias_c) never depends on c_t, the memory (at initialisation ln_bias_c = 0 "
            "and every output is 0). Use hidden_size >= 3, or layer_norm=False."
        )
    if layer_norm and hidden_size == 2:
        warn_two_units("lstm", "the cell state c_t", "hidden_size")
    if layer_norm and proj_size == 1:
        warn_one_input("lstm", "h_{t-1} W_h", "proj_size")
    return LSTMCell(
        hidden_size=hidden_size,
        peephole=check_bool("peephole", peephole),
        forget_bias=check_real("forget_bias", forget_bias, what="the cell"),
        layer_norm=layer_norm,
        proj_size=proj_size,
        kernel_init=kernel_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        peephole_init=peephole_init,
        proj_init=proj_init,
        dtype=check_factory_options(
            dtype,
            kernel_init=kernel_init,
            recurrent_init=recurrent_init,
            bias_init=bias_init,
            peephole_init=peephole_init,
            proj_init=proj_init,
        ),
    )


@dataclasses.dataclass(frozen=True)
class LSTMCell(Cell):
    """The LSTM's configuration (built by `lj.lstm`); carry `LSTMCarry(h [.., P], c [.., H])`."""

    hidden_size: int
    peephole: bool
    forget_bias: float
    layer_norm: bool
    proj_size: Optional[int]
    kernel_init: Initializer
    recurrent_init: Initializer
    bias_init: Initializer
    peephole_init: Initializer
    proj_init: Initializer
    dtype: jnp.dtype

    @property
    def output_size(self) -> int:
        """P, the size of h and y (H without projection)."""
        return self.hidden_size if self.proj_size is None else self.proj_size

    @property
    def name(self) -> str:
        return (
            "lstm"
            + "_peephole" * self.peephole
            + "_ln" * self.layer_norm
            + "_proj" * (self.proj_size is not None)
        )

    def init(self, key, input_size: int) -> LSTMParams:
        input_size = check_size("input_size", input_size)
        if self.layer_norm and input_size == 1:
            warn_one_input("lstm.init", "x_t W_x", "input_size")
        H, P, dtype = self.hidden_size, self.output_size, self.dtype
        kx, kh, kb, kp = jax.random.split(key, 4)
        # Folded in rather than a fifth split, so that a key gives the plain
        # LSTM the same parameters as before the projection existed.
        kr = jax.random.fold_in(key, 1)
        b = self.bias_init(kb, (4 * H,), dtype)
        b = b.at[H : 2 * H].add(jnp.asarray(self.forget_bias, dtype))
        ones = jnp.ones((4 * H,), dtype)
        ln = self.layer_norm
        return LSTMParams(
            w_x=gate_blocks(self.kernel_init, kx, input_size, H, 4, dtype),
            w_h=gate_blocks(self.recurrent_init, kh, P, H, 4, dtype),
            b=b,
            peephole=self.peephole_init(kp, (3, H), dtype) if self.peephole else None,
            w_proj=self.proj_init(kr, (H, P), dtype) if self.proj_size is not None else None,
            ln_gain_x=ones if ln else None,
            ln_gain_h=ones if ln else None,
            ln_gain_c=jnp.ones((H,), dtype) if ln else None,
            ln_bias_c=jnp.zeros((H,), dtype) if ln else None,
        )

    def initial_carry(self, batch_shape=()) -> LSTMCarry:
        shape = batch_shape_tuple(batch_shape)
        return LSTMCarry(
            h=jnp.zeros(shape + (self.output_size,), self.dtype),
            c=jnp.zeros(shape + (self.hidden_size,), self.dtype),
        )

    def project(self, params: LSTMParams, x: Array) -> Array:
        xw = x @ params.w_x
        if self.layer_norm:
            assert params.ln_gain_x is not None  # init gives it with layer_norm
            xw = _ln(xw, params.ln_gain_x)
        return xw + row(params.b, x)

    def recur(self, params: LSTMParams, carry: LSTMCarry, px: Array):
        # The equations above, written once in _lstm_rule.py: the plain step
        # with its hand-derived derivative (faster BPTT on XLA:CPU), the
        # layer-normalised one by plain autodiff. Either holds for h_{t-1}
        # of any size P, so the projection needs nothing else.
        ln = None
        if self.layer_norm:
            gain_h, gain_c, bias_c = params.ln_gain_h, params.ln_gain_c, params.ln_bias_c
            assert gain_h is not None and gain_c is not None and bias_c is not None  # init's
            ln = LSTMNorm(gain_h, gain_c, bias_c)
        h, c = lstm_recur(params.w_h, params.peephole, carry.h, carry.c, px, ln)
        if self.proj_size is not None:
            assert params.w_proj is not None  # init gives it with proj_size
            h = h @ params.w_proj
        return LSTMCarry(h, c), h

    def output(self, carry: LSTMCarry) -> Array:
        return carry.h

"""Long short-term memory cell, with optional peephole connections."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Cell, batch_shape_tuple
from lstmjax._checks import check_bool, check_factory_options, check_real, check_size, row
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
    gate_blocks,
)
from lstmjax._lstm_vjp import lstm_recur

GATES = ("i", "f", "g", "o")  # order of the gate blocks in w_x, w_h and b


class LSTMParams(NamedTuple):
    w_x: Array  # [input_size, 4*hidden], gate blocks in order i, f, g, o
    w_h: Array  # [hidden, 4*hidden], same order
    b: Array  # [4*hidden], same order
    peephole: Optional[Array] = None  # [3, hidden]: rows (i, f, o); None if off


class LSTMCarry(NamedTuple):
    h: Array  # [..., hidden], the output ("short-term memory")
    c: Array  # [..., hidden], the cell state ("long-term memory")


def lstm(
    hidden_size: int,
    peephole: bool = False,
    forget_bias: float = 1.0,
    *,
    kernel_init=default_kernel_init,
    recurrent_init=default_recurrent_init,
    bias_init=default_bias_init,
    peephole_init=jax.nn.initializers.zeros,
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
        after Jozefowicz et al. 2015; 0.0 gives the plain initialisation).
      kernel_init, recurrent_init, bias_init, peephole_init: initialisers of
        W_x `[I, 4H]` (LeCun normal per gate), W_h `[H, 4H]` (orthogonal per
        gate), b `[4H]` (zeros) and the peephole weights `[3, H]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `LSTMCarry(h, c)`, each `[..., H]`.
    """
    H = hidden_size = check_size("hidden_size", hidden_size)
    peephole = check_bool("peephole", peephole)
    forget_bias = check_real("forget_bias", forget_bias)
    dtype = check_factory_options(
        dtype,
        kernel_init=kernel_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        peephole_init=peephole_init,
    )

    def init(key, input_size: int) -> LSTMParams:
        check_size("input_size", input_size)
        kx, kh, kb, kp = jax.random.split(key, 4)
        b = bias_init(kb, (4 * H,), dtype)
        b = b.at[H : 2 * H].add(jnp.asarray(forget_bias, dtype))
        return LSTMParams(
            w_x=gate_blocks(kernel_init, kx, input_size, H, 4, dtype),
            w_h=gate_blocks(recurrent_init, kh, H, H, 4, dtype),
            b=b,
            peephole=peephole_init(kp, (3, H), dtype) if peephole else None,
        )

    def initial_carry(batch_shape=()) -> LSTMCarry:
        shape = batch_shape_tuple(batch_shape) + (H,)
        return LSTMCarry(h=jnp.zeros(shape, dtype), c=jnp.zeros(shape, dtype))

    def project(params: LSTMParams, x: Array) -> Array:
        return x @ params.w_x + row(params.b, x)

    def recur(params: LSTMParams, carry: LSTMCarry, px: Array):
        # The equations above, with the hand-derived backward pass (faster
        # BPTT on XLA:CPU; see _lstm_vjp.py).
        h, c = lstm_recur(params.w_h, params.peephole, carry.h, carry.c, px)
        return LSTMCarry(h, c), h

    return Cell(
        init=init,
        initial_carry=initial_carry,
        project=project,
        recur=recur,
        hidden_size=H,
        output_size=H,
        name="lstm_peephole" if peephole else "lstm",
    )

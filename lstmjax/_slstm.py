"""sLSTM (Beck et al. 2024, "xLSTM"): the scalar-memory cell with exponential gating.

Its gates read h_{t-1} through recurrent weights that are block-diagonal
over heads (memory mixing within a head, none across heads), so the step is
nonlinear in the carry: it runs on the scan and on the parallel-in-time
solvers (`lj.Newton`, `lj.QuasiNewton`, `lj.ELK`) like the LSTM.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._cell import Cell, batch_shape_tuple, dense_projection
from lstmjax._checks import check_choice, check_factory_options, check_heads, check_real, check_size
from lstmjax._exponential_gates import FORGET_GATES, log_forget, stabilise
from lstmjax._initializers import (
    default_bias_init,
    default_kernel_init,
    default_recurrent_init,
    gate_blocks,
)
from lstmjax._typing import Array, Initializer

GATES = ("i", "f", "z", "o")  # order of the gate blocks in w_x, w_h (per head) and b


class SLSTMParams(NamedTuple):
    """sLSTM parameters; gate blocks in order (i, f, z, o), PyTorch's (z in the place of g)."""

    w_x: Array  # [input_size, 4*hidden], gate blocks i, f, z, o (each hidden wide)
    w_h: Array  # [num_heads, d, 4*d] (d = hidden / num_heads): head k's blocks i, f, z, o
    b: Array  # [4*hidden], blocks i, f, z, o


class SLSTMCarry(NamedTuple):
    """The sLSTM carry: output h, cell state c, normaliser n, stabiliser m; each `[..., H]`.

    c and n are kept scaled by exp(-m) (`lstmjax._exponential_gates`).
    """

    h: Array  # [..., hidden], the output
    c: Array  # [..., hidden], the cell state, scaled: c_t exp(-m_t)
    n: Array  # [..., hidden], the normaliser, scaled: n_t exp(-m_t)
    m: Array  # [..., hidden], the log-space stabiliser


def slstm(
    hidden_size: int,
    *,
    num_heads: int = 1,
    forget_gate: str = "sigmoid",
    forget_bias: float = 1.0,
    kernel_init=default_kernel_init,
    recurrent_init=default_recurrent_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Cell:
    """sLSTM cell (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", section 2.2).

    With a_t = x_t W_x + h_{t-1} R + b split into four gate blocks (R
    block-diagonal: head k's units read only head k's units of h_{t-1}):

        z_t = tanh(a_z)                           cell input
        i_t = exp(a_i)                            input gate, exponential
        f_t = sigmoid(a_f)   or   exp(a_f)        forget gate (`forget_gate`)
        o_t = sigmoid(a_o)                        output gate
        c_t = f_t c_{t-1} + i_t z_t               cell state
        n_t = f_t n_{t-1} + i_t                   normaliser
        h_t = o_t c_t / n_t,   y_t = h_t

    Carried stabilised (`lstmjax._exponential_gates`), per unit:

        m_t  = max(log f_t + m_{t-1}, a_i)
        i'_t = exp(a_i - m_t),   f'_t = exp(log f_t + m_{t-1} - m_t)
        c_t  = f'_t c_{t-1} + i'_t z_t,   n_t = f'_t n_{t-1} + i'_t

    which gives the same h_t (c / n does not change when both are scaled by
    exp(-m_t)) with every factor at most 1. Where the entering normaliser is
    zero (an empty memory, as in the zero initial carry), m_t = a_i and
    f'_t = 0, so the first input enters at scale 1 (n_t = 1) rather than at
    exp(a_i - log f_t), which can underflow; the normaliser then stays >= 1.

    Gate order (i, f, z, o) in W_x `[I, 4H]` and b `[4H]` (PyTorch's, z in
    the place of g), and in each head's recurrent matrix, `w_h[k]` `[d, 4d]`
    (d = H / num_heads units per head).

    Args:
      hidden_size: H, a multiple of `num_heads`.
      num_heads: heads of the block-diagonal recurrent matrix (1, the
        default: one full H x H block per gate).
      forget_gate: "sigmoid" (default) or "exp".
      forget_bias: added to the forget-gate bias at initialisation (1.0, as
        `lj.lstm`'s).
      kernel_init: initialiser of W_x `[I, 4H]` (LeCun normal per gate).
      recurrent_init: initialiser of each head's recurrent block `[d, d]`
        per gate (orthogonal).
      bias_init: initialiser of b `[4H]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `SLSTMCarry(h, c, n, m)`, each `[..., H]`.
    """
    hidden_size, num_heads = check_heads("slstm", hidden_size, num_heads)
    return SLSTMCell(
        hidden_size=hidden_size,
        num_heads=num_heads,
        forget_gate=check_choice("forget_gate", forget_gate, FORGET_GATES),
        forget_bias=check_real("forget_bias", forget_bias),
        kernel_init=kernel_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        dtype=check_factory_options(
            dtype, kernel_init=kernel_init, recurrent_init=recurrent_init, bias_init=bias_init
        ),
    )


@dataclasses.dataclass(frozen=True)
class SLSTMCell(Cell):
    """The sLSTM's configuration (built by `lj.slstm`); carry `SLSTMCarry(h, c, n, m)`."""

    hidden_size: int
    num_heads: int
    forget_gate: str
    forget_bias: float
    kernel_init: Initializer
    recurrent_init: Initializer
    bias_init: Initializer
    dtype: jnp.dtype

    scaled_carry: ClassVar[bool] = True  # c and n scaled by exp(-m)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def name(self) -> str:
        return "slstm" + "_exp_forget" * (self.forget_gate == "exp")

    def init(self, key, input_size: int) -> SLSTMParams:
        input_size = check_size("input_size", input_size)
        H, S, dtype = self.hidden_size, self.num_heads, self.dtype
        d = H // S
        kx, kh, kb = jax.random.split(key, 3)
        b = self.bias_init(kb, (4 * H,), dtype)
        b = b.at[H : 2 * H].add(jnp.asarray(self.forget_bias, dtype))
        heads = [
            gate_blocks(self.recurrent_init, k, d, d, 4, dtype) for k in jax.random.split(kh, S)
        ]
        return SLSTMParams(
            w_x=gate_blocks(self.kernel_init, kx, input_size, H, 4, dtype),
            w_h=jnp.stack(heads),
            b=b,
        )

    def initial_carry(self, batch_shape=()) -> SLSTMCarry:
        zeros = jnp.zeros(batch_shape_tuple(batch_shape) + (self.hidden_size,), self.dtype)
        return SLSTMCarry(h=zeros, c=zeros, n=zeros, m=zeros)

    def project(self, params: SLSTMParams, x: Array) -> Array:
        return dense_projection(params, x)

    def recurrent(self, w_h: Array, h: Array) -> Array:
        """h_{t-1} R `[..., 4H]` in the gate-major order of px (block-diagonal R)."""
        S = self.num_heads
        if S == 1:
            return h @ w_h[0]
        d = self.hidden_size // S
        lead = h.shape[:-1]
        per_head = jnp.einsum("...kd,kde->...ke", jnp.reshape(h, lead + (S, d)), w_h)
        per_gate = jnp.swapaxes(jnp.reshape(per_head, lead + (S, 4, d)), -3, -2)
        return jnp.reshape(per_gate, lead + (4 * self.hidden_size,))

    def recur(self, params: SLSTMParams, carry: SLSTMCarry, px: Array):
        a = px + self.recurrent(params.w_h, carry.h)
        a_i, a_f, a_z, a_o = jnp.split(a, 4, axis=-1)
        log_f = log_forget(a_f, self.forget_gate)
        m, f_scale, i_scale = stabilise(carry.m, log_f, a_i, empty=carry.n == 0)
        c = f_scale * carry.c + i_scale * jnp.tanh(a_z)
        n = f_scale * carry.n + i_scale
        h = jax.nn.sigmoid(a_o) * c / n
        return SLSTMCarry(h, c, n, m), h

    def output(self, carry: SLSTMCarry) -> Array:
        return carry.h

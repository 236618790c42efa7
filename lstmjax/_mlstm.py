"""mLSTM (Beck et al. 2024, "xLSTM"): the matrix-memory cell, parallel in time.

Queries, keys, values and gates come from x_t alone, so given its
stabiliser the step is affine in the memory, C_t = f'_t C_{t-1} + i'_t v_t
k_t^T, and the stabiliser itself follows m_t = max(m_{t-1} + log f_t, i~_t)
from the inputs alone. `unroll(method="auto")` therefore runs the whole
sequence as one exact parallel pass (`lj.Affine`, `_affine.stabilised_pass`):
one max-plus scan for m, one affine scan for each memory, then the readout
of every step at once. The cell states its step in the pieces that pass
needs (`log_gates`, `coefficients`, `readout`, `unpack`, `pack`), and its
`recur` is made of the same pieces.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._cell import Cell, batch_shape_tuple, dense_projection
from lstmjax._checks import check_choice, check_factory_options, check_heads, check_real, check_size
from lstmjax._exponential_gates import FORGET_GATES, log_forget, stabilise
from lstmjax._initializers import default_bias_init, default_kernel_init, gate_blocks
from lstmjax._typing import Array, Initializer

BLOCKS = ("q", "k", "v", "o", "i", "f")  # order of the blocks in w_x and b


class MLSTMParams(NamedTuple):
    """mLSTM parameters: blocks (q, k, v, o), each H wide, then (i, f), each num_heads wide."""

    w_x: Array  # [input_size, 4*hidden + 2*num_heads], blocks q, k, v, o, i, f
    b: Array  # [4*hidden + 2*num_heads], same order


class MLSTMCarry(NamedTuple):
    """The mLSTM carry (S = num_heads, d = H / S): output, memory, normaliser, stabiliser.

    C and n are kept scaled by exp(-m) (`lstmjax._exponential_gates`); every
    leaf is flat, `[..., size]`, as every cell's carry.
    """

    h: Array  # [..., H], the output
    C: Array  # [..., S*d*d], head k's d x d memory at [k*d*d, (k+1)*d*d), row-major (v, k)
    n: Array  # [..., S*d], head k's normaliser at [k*d, (k+1)*d)
    m: Array  # [..., S], each head's stabiliser


def mlstm(
    hidden_size: int,
    *,
    num_heads: int = 1,
    forget_gate: str = "sigmoid",
    forget_bias: float = 1.0,
    kernel_init=default_kernel_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Cell:
    """mLSTM cell (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", section 2.3).

    Per head (S = num_heads heads of d = H / S units), with a_t = x_t W_x + b
    split into the blocks q, k, v, o (d wide per head) and i, f (one per head):

        q_t = a_q,   k_t = a_k / sqrt(d),   v_t = a_v      query, key, value
        i_t = exp(a_i),   f_t = sigmoid(a_f) or exp(a_f)   gates, scalars per head
        o_t = sigmoid(a_o)                                 output gate, per unit
        C_t = f_t C_{t-1} + i_t v_t k_t^T                  memory, d x d
        n_t = f_t n_{t-1} + i_t k_t                        normaliser, d
        h_t = o_t * (C_t q_t) / max(|n_t^T q_t|, 1),   y_t = h_t

    No gate reads h_{t-1}. The key's scale 1/sqrt(d) applies to the whole
    pre-activation a_k (bias included; the paper writes W_k x_t / sqrt(d) +
    b_k, the same family of functions). Carried stabilised, per head
    (`lstmjax._exponential_gates`):

        m_t  = max(log f_t + m_{t-1}, a_i)
        i'_t = exp(a_i - m_t),   f'_t = exp(log f_t + m_{t-1} - m_t)
        C_t  = f'_t C_{t-1} + i'_t v_t k_t^T,   n_t = f'_t n_{t-1} + i'_t k_t
        h_t  = o_t * (C_t q_t) / max(|n_t^T q_t|, exp(-m_t))

    the same h_t as the unscaled equations (numerator and denominator both
    scaled by exp(-m_t)), with every factor applied to the carry at most 1.

    Given m, the step is affine in (C, n), and m follows from the inputs
    alone: `lj.unroll(method="auto")` runs the sequence as one exact parallel
    pass (`lj.Affine`); `lj.Scan()` runs it step by step.

    Args:
      hidden_size: H, a multiple of `num_heads`.
      num_heads: S, the heads, each with its own d x d memory (default 1).
      forget_gate: "sigmoid" (default) or "exp".
      forget_bias: added to the forget-gate bias at initialisation (1.0, as
        `lj.lstm`'s).
      kernel_init: initialiser of W_x `[I, 4H + 2S]` (LeCun normal per
        block; blocks q, k, v, o, then i, f).
      bias_init: initialiser of b `[4H + 2S]` (zeros).
      dtype: parameter dtype.

    Returns:
      A `Cell`; its carry is `MLSTMCarry(h, C, n, m)`: h `[..., H]`, C
      `[..., S*d*d]`, n `[..., S*d]`, m `[..., S]`.
    """
    hidden_size, num_heads = check_heads("mlstm", hidden_size, num_heads)
    return MLSTMCell(
        hidden_size=hidden_size,
        num_heads=num_heads,
        forget_gate=check_choice("forget_gate", forget_gate, FORGET_GATES),
        forget_bias=check_real("forget_bias", forget_bias),
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=check_factory_options(dtype, kernel_init=kernel_init, bias_init=bias_init),
    )


@dataclasses.dataclass(frozen=True)
class MLSTMCell(Cell):
    """The mLSTM's configuration (built by `lj.mlstm`); carry `MLSTMCarry(h, C, n, m)`."""

    hidden_size: int
    num_heads: int
    forget_gate: str
    forget_bias: float
    kernel_init: Initializer
    bias_init: Initializer
    dtype: jnp.dtype

    # Affine in its memories given the stabiliser: `lj.Affine` runs it in parallel
    # (`_affine.stabilised_pass`, with the methods below).
    stabilised_linear: ClassVar[bool] = True
    reads_h: ClassVar[bool] = False  # no gate reads h_{t-1}
    scaled_carry: ClassVar[bool] = True  # C and n scaled by exp(-m)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def name(self) -> str:
        return "mlstm" + "_exp_forget" * (self.forget_gate == "exp")

    @property
    def head_size(self) -> int:
        """d = H / num_heads."""
        return self.hidden_size // self.num_heads

    def init(self, key, input_size: int) -> MLSTMParams:
        input_size = check_size("input_size", input_size)
        H, S, dtype = self.hidden_size, self.num_heads, self.dtype
        k_qkvo, k_if, kb = jax.random.split(key, 3)
        w_x = jnp.concatenate(
            [
                gate_blocks(self.kernel_init, k_qkvo, input_size, H, 4, dtype),
                gate_blocks(self.kernel_init, k_if, input_size, S, 2, dtype),
            ],
            axis=1,
        )
        b = self.bias_init(kb, (4 * H + 2 * S,), dtype)
        b = b.at[4 * H + S :].add(jnp.asarray(self.forget_bias, dtype))
        return MLSTMParams(w_x=w_x, b=b)

    def initial_carry(self, batch_shape=()) -> MLSTMCarry:
        shape = batch_shape_tuple(batch_shape)
        S, d = self.num_heads, self.head_size

        def zeros(size):
            return jnp.zeros(shape + (size,), self.dtype)

        return MLSTMCarry(h=zeros(S * d), C=zeros(S * d * d), n=zeros(S * d), m=zeros(S))

    def project(self, params: MLSTMParams, x: Array) -> Array:
        return dense_projection(params, x)

    # --- the step in pieces (also what the parallel pass uses) -----------------------

    def _heads(self, a: Array) -> Array:
        """`[..., S*d] -> [..., S, d]`."""
        return jnp.reshape(a, a.shape[:-1] + (self.num_heads, self.head_size))

    def _qkv(self, px: Array) -> tuple[Array, Array, Array]:
        """q, k (scaled by 1/sqrt(d)), v, each `[..., S, d]`."""
        H = self.hidden_size
        q, k, v = (self._heads(px[..., j * H : (j + 1) * H]) for j in range(3))
        return q, k / jnp.asarray(math.sqrt(self.head_size), k.dtype), v

    def log_gates(self, params: MLSTMParams, px: Array) -> tuple[Array, Array]:
        """`(log f_t, a_i)`, each `[..., S]`: the stabiliser's coefficients."""
        H, S = self.hidden_size, self.num_heads
        a_i, a_f = px[..., 4 * H : 4 * H + S], px[..., 4 * H + S :]
        return log_forget(a_f, self.forget_gate), a_i

    def coefficients(
        self, params: MLSTMParams, m_prev: Array, px: Array
    ) -> tuple[Array, Array, tuple[Array, Array]]:
        """`(m_t, f'_t, (i'_t v_t k_t^T, i'_t k_t))`: the step of the memories given m_{t-1}.

        Each memory s (C `[..., S, d*d]`, n `[..., S, d]`, per head) becomes
        `f'_t[..., None] * s + input`; m_t and f'_t are `[..., S]`.
        """
        log_f, a_i = self.log_gates(params, px)
        m, f_scale, i_scale = stabilise(m_prev, log_f, a_i)
        _, k, v = self._qkv(px)
        vk = v[..., :, None] * k[..., None, :]
        vk = jnp.reshape(vk, vk.shape[:-2] + (self.head_size**2,))
        return m, f_scale, (i_scale[..., None] * vk, i_scale[..., None] * k)

    def readout(
        self, params: MLSTMParams, memories: tuple[Array, Array], m: Array, px: Array
    ) -> Array:
        """h_t `[..., H]` from the new memories (C `[..., S, d*d]`, n `[..., S, d]`) and m."""
        C, n = memories
        q, _, _ = self._qkv(px)
        d = self.head_size
        Cq = jnp.einsum("...ij,...j->...i", jnp.reshape(C, C.shape[:-1] + (d, d)), q)
        nq = jnp.sum(n * q, axis=-1, keepdims=True)
        h = Cq / jnp.maximum(jnp.abs(nq), jnp.exp(-m)[..., None])
        o = jax.nn.sigmoid(px[..., 3 * self.hidden_size : 4 * self.hidden_size])
        return o * jnp.reshape(h, h.shape[:-2] + (self.hidden_size,))

    def unpack(self, carry: MLSTMCarry) -> tuple[tuple[Array, Array], Array]:
        """`((C [..., S, d*d], n [..., S, d]), m [..., S])`: the memories per head."""
        S = self.num_heads
        C = jnp.reshape(carry.C, carry.C.shape[:-1] + (S, self.head_size**2))
        return (C, self._heads(carry.n)), carry.m

    def pack(self, h: Array, memories: tuple[Array, Array], m: Array) -> MLSTMCarry:
        """The inverse of `unpack`, with the output h."""
        C, n = memories
        return MLSTMCarry(
            h=h,
            C=jnp.reshape(C, C.shape[:-2] + (C.shape[-2] * C.shape[-1],)),
            n=jnp.reshape(n, n.shape[:-2] + (self.hidden_size,)),
            m=m,
        )

    def recur(self, params: MLSTMParams, carry: MLSTMCarry, px: Array):
        (C, n), m_prev = self.unpack(carry)
        m, f_scale, (add_C, add_n) = self.coefficients(params, m_prev, px)
        f = f_scale[..., None]
        C, n = f * C + add_C, f * n + add_n
        h = self.readout(params, (C, n), m, px)
        return self.pack(h, (C, n), m), h

    def output(self, carry: MLSTMCarry) -> Array:
        return carry.h

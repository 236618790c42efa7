"""The exact parallel strategy `Affine` for cells whose step is affine in the carry.

For a cell with `linear_in_carry=True` (the min cells) the masked step
h_t = F_t(h_{t-1}) = masked_recur(recur, params, h_{t-1}, px_t, ...) is
elementwise affine in every carry leaf: F_t(h) = a_t * h + b_t, with
b_t = F_t(0) and a_t = dF_t/dh (one forward-mode derivative along ones,
exact for an elementwise affine map). The masks stay affine (past a
length: a = 1, b = 0; at a reset: a = 0, b = F_t(carry0)), so lengths,
resets and reverse need nothing here. One affine scan then gives every
state, and the cell's `output` of every state the outputs (zero where a
step is masked).

Chunks: the sequence is processed in chunks of `chunk` steps (a `lax.scan`
over chunks, each `jax.checkpoint`ed), so that a chunk's projection,
coefficients and states stay in cache, and the backward pass recomputes
them per chunk instead of storing them for all T steps. On the 2-core CPU
(B = 16, I = 16, H = 64, T = 10,000, minGRU training step) chunks of 512
steps took about half the time of one whole-sequence pass, where writing
and re-reading full `[T, B, H]` arrays dominates; 250 to 1,000 steps
measured alike, 2,000 and more slower. On accelerators the default is one
chunk: there the associative scan's depth over the whole sequence decides.
For a cell kept in log-scaled form (below) the CPU chunk is sized by its
carry instead, CPU_CHUNK_FLOATS // (carry floats per sequence) steps (the
min cells' 512 steps at H = 64 hold as many): its matrix memories make a
chunk of 512 steps hundreds of MB. Measured (B = 16, T = 10,000, mLSTM
H = 64, 4 heads of 16 x 16, 1,156 carry floats, so 28 steps): chunks of
32 to 64 steps took 0.20-0.31 s (inference) and 1.2-2.1 s (training step)
against 0.61 s and 3.4 s for 512 steps; with one head of 64 x 64 (4,225
floats, 7 steps) chunks of 8 took 0.97 s and 20 s against 1.43 s and 34 s
for 64.

Cells kept in log-scaled form (`Cell.stabilised_linear`, the mLSTM) are
not affine in every leaf: their stabiliser m_t = max(m_{t-1} + log f_t,
i~_t) is a max-plus recurrence, the memories are affine only given m, and
the output h is read from the new memories. `stabilised_pass` solves them
in three stages, each a scan over the whole chunk: (1) m, by the max-plus
scan (`_affine_scan.max_plus_scan`); (2) every memory, by the affine scan
with the cell's coefficients given m_{t-1}; (3) the outputs, read from the
memories at every step at once. In each stage the masks enter exactly as
elsewhere: `masked_recur` is applied to the step's *map* (the pair that
represents m -> max(m + p, q), or s -> P s + Q), with the identity map as
the carry a masked step keeps and the constant map of the initial carry as
the one a reset restores.

Cost: work O(T B H); memory O(T B H) for the outputs plus O(chunk B H) of
intermediates. The gradient is autodiff of the same exact computation:
per chunk, the recomputed forward pass and one affine scan backward in
time (the affine scan's own transpose, `_affine_scan.py`), of the same
order.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Protocol, cast

import jax
import jax.numpy as jnp

from lstmjax._affine_scan import (
    ALGORITHMS,
    affine_scan,
    default_algorithm,
    entering,
    max_plus_scan,
)
from lstmjax._cell import Cell
from lstmjax._checks import check_optional_size
from lstmjax._sequence import Sequences, masked_recur, zero_invalid
from lstmjax._typing import Array, Carry, Params

CPU_CHUNK_STEPS = 512  # the measured default chunk on CPU (module docstring)
# A cell kept in log-scaled form (the mLSTM) has a carry of many floats per sequence
# (d x d per head): its CPU chunk holds as many carry floats as the min cells' 512
# steps of H = 64 do (module docstring).
CPU_CHUNK_FLOATS = CPU_CHUNK_STEPS * 64


@dataclasses.dataclass(frozen=True)
class Affine:
    """The exact parallel pass of a cell whose step is affine in its carry (the min cells).

    Attributes:
      algorithm: the affine scan's algorithm: "auto" (default: "sequential"
        on CPU, where it measured fastest, "associative", depth O(log T),
        elsewhere), "sequential", "associative", "blocked", or "log" (Feng
        et al.'s log-space form, valid without resets).
      chunk: steps per chunk; each chunk's projection, coefficients and
        states are computed together (in cache) and recomputed in the
        backward pass. None (default): 512 on CPU (about 2x faster training
        than one pass at T = 10,000), or for `lj.mlstm` as many steps as
        hold 32,768 carry floats per sequence (28 for `lj.mlstm(64,
        num_heads=4)`); one chunk of the whole sequence elsewhere. Same
        results either way.
    """

    algorithm: str = "auto"
    chunk: Optional[int] = None

    def __post_init__(self):
        if not (isinstance(self.algorithm, str) and self.algorithm in ("auto", *ALGORITHMS)):
            raise ValueError(
                f"Affine: algorithm must be one of {['auto', *ALGORITHMS]}; got {self.algorithm!r}."
            )
        # Stored as a Python int (`_checks`' one rule): equal options hash equal.
        object.__setattr__(self, "chunk", check_optional_size("Affine: chunk", self.chunk))

    def resolve(self, platform: str, cell: Optional[Cell] = None) -> Affine:
        """This strategy with "auto" (and chunk None) decided for `platform` (and `cell`)."""
        algorithm = self.algorithm
        if algorithm == "auto":
            algorithm = default_algorithm(platform)
        chunk = self.chunk
        if chunk is None and platform == "cpu":
            chunk = CPU_CHUNK_STEPS
            if cell is not None and cell.stabilised_linear:
                carry = jax.eval_shape(lambda: cell.initial_carry(()))
                floats = sum(leaf.size for leaf in jax.tree_util.tree_leaves(carry))
                chunk = max(1, CPU_CHUNK_FLOATS // floats)
        return dataclasses.replace(self, algorithm=algorithm, chunk=chunk)

    def run(self, cell: Cell, params: Params, seq: Sequences) -> tuple[Array, Carry, None]:
        """`(ys [T, B, O], carry, None)` in processing order (a resolved strategy)."""
        if not (cell.linear_in_carry or cell.stabilised_linear):
            raise ValueError(
                f"method=Affine needs a cell whose step is affine in its carry "
                f"(Cell.linear_in_carry, e.g. lj.min_gru, lj.min_lstm, or "
                f"Cell.stabilised_linear, lj.mlstm); {cell.name} is not. "
                f"Use method='scan' or a parallel solver ('newton', 'quasi_newton', 'elk')."
            )
        if cell.stabilised_linear and self.algorithm == "log":
            raise ValueError(
                f"method=Affine(algorithm='log') needs positive coefficients and states, which "
                f"{cell.name}'s memories (v k^T, k) are not; use algorithm 'auto', "
                f"'sequential', 'associative' or 'blocked'."
            )
        ys, carry = linear_unroll(cell, params, seq, self.algorithm, self.chunk)
        return ys, carry, None


def step_fn(cell: Cell, params: Params, carry0: Carry):
    """`F(h_prev, px_t, valid_t, reset_t) -> (h_t, y_t)`: THE masked step, for vmap over t."""

    def f(h, px, valid, reset):
        return masked_recur(cell.recur, params, h, px, valid, reset, carry0)

    return f


def last(hs: Carry, carry0: Carry) -> Carry:
    """The final carry (carry0 when T = 0)."""
    return jax.tree_util.tree_map(lambda h, c: h[-1] if h.shape[0] else c, hs, carry0)


def project_all(cell: Cell, params: Params, xs: Array) -> Array:
    """`cell.project` of every step, `[T, B, F] -> [T, B, G]`, as one 2-D matmul.

    Merging the leading axes first measured faster on XLA:CPU (its backward
    `x^T dpx` is then a plain `[F, TB] @ [TB, G]` product).
    """
    T, B = xs.shape[:2]
    px = cell.project(params, jnp.reshape(xs, (T * B,) + xs.shape[2:]))
    return jnp.reshape(px, (T, B) + px.shape[1:])


def linear_pass(
    cell: Cell, params: Params, seq: Sequences, start: Carry, algorithm: str
) -> tuple[Array, Carry]:
    """Every state and output of `seq` from the carry `start`, at once.

    `seq.carry0` is the carry that resets restore; `start` the one entering
    the first step (they differ for every chunk but the first).
    """
    f = step_fn(cell, params, seq.carry0)
    px = project_all(cell, params, seq.xs)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, start)
    ones = jax.tree_util.tree_map(jnp.ones_like, start)

    def coefficients(px_t, valid, reset):
        b, a = jax.jvp(lambda h: f(h, px_t, valid, reset)[0], (zeros,), (ones,))
        return a, b

    a, b = jax.vmap(coefficients)(px, seq.valid, seq.reset)
    hs = jax.tree_util.tree_map(lambda a_, b_, h0: affine_scan(a_, b_, h0, algorithm), a, b, start)
    ys = zero_invalid(jax.vmap(cell.output)(hs), seq.valid)
    return ys, last(hs, start)


class StabilisedCell(Protocol):
    """What `stabilised_pass` reads of a cell with `stabilised_linear=True` (see there)."""

    def log_gates(self, params: Params, px: Array) -> tuple[Array, Array]: ...

    def coefficients(
        self, params: Params, m_prev: Array, px: Array
    ) -> tuple[Array, Array, tuple[Array, ...]]: ...

    def readout(
        self, params: Params, memories: tuple[Array, ...], m: Array, px: Array
    ) -> Array: ...

    def unpack(self, carry: Carry) -> tuple[tuple[Array, ...], Array]: ...

    def pack(self, h: Array, memories: tuple[Array, ...], m: Array) -> Carry: ...

    def project(self, params: Params, x: Array) -> Array: ...

    def output(self, carry: Carry) -> Array: ...


def stabilised_pass(
    cell: Cell, params: Params, seq: Sequences, start: Carry, algorithm: str
) -> tuple[Array, Carry]:
    """`linear_pass` for a cell kept in log-scaled form (module docstring; the mLSTM).

    The cell supplies `log_gates(params, px) -> (log f, i~)` `[..., S]`,
    `coefficients(params, m_prev, px) -> (m, f', inputs)`, `readout(params,
    memories, m, px) -> h`, and `unpack(carry) -> (memories, m)` with each
    memory `[..., S, D]` (its inverse `pack(h, memories, m)`); its `output`
    is the carried h, which every valid step sets to the readout.
    """
    px = project_all(cell, params, seq.xs)
    form = cast(StabilisedCell, cell)  # its stabilised form (the methods below)
    memories0, m_reset = form.unpack(seq.carry0)  # what a reset restores
    memories_start, m_start = form.unpack(start)  # what enters the first step

    def masked_maps(step, keep, restore, *per_step):
        """The masked step's map at every t: `keep` where masked, `restore` then step at resets."""
        return jax.vmap(
            lambda v, r, *xs: masked_recur(step, params, keep(*xs), xs, v, r, restore)[0]
        )(seq.valid, seq.reset, *per_step)

    # (1) The stabiliser: m -> max(m + p, q), composed with the step m -> max(m + log f, i~).
    def stabiliser_step(_, pq, gates):
        (p, q), (log_f, a_i) = pq, gates
        return (p + log_f, jnp.maximum(q + log_f, a_i)), p

    log_f, a_i = form.log_gates(params, px)
    alpha, beta = masked_maps(
        stabiliser_step,
        lambda *_: (jnp.zeros_like(m_start), jnp.full_like(m_start, -jnp.inf)),
        (jnp.full_like(m_reset, -jnp.inf), m_reset),
        log_f,
        a_i,
    )
    m_prev = entering(max_plus_scan(alpha, beta, m_start, algorithm), m_start)

    # (2) The memories given m_{t-1}: s -> P s + Q, composed with s -> f' s + input.
    def memory_step(_, state, inputs):  # inputs: (m_{t-1}, px_t); m_{t-1} is in state too
        (m, maps), px_t = state, inputs[1]
        m, f_scale, added = form.coefficients(params, m, px_t)
        f = f_scale[..., None]
        maps = tuple((f * P, f * Q + u) for (P, Q), u in zip(maps, added, strict=True))
        return (m, maps), m

    def keep_memories(m_in, _):
        ones = jnp.ones(m_in.shape + (1,), m_in.dtype)
        return m_in, tuple((ones, jnp.zeros_like(s)) for s in memories_start)

    restore = (m_reset, tuple((jnp.zeros(s.shape[:-1] + (1,), s.dtype), s) for s in memories0))
    m_new, maps = masked_maps(memory_step, keep_memories, restore, m_prev, px)
    memories = tuple(
        affine_scan(P, Q, s0, algorithm) for (P, Q), s0 in zip(maps, memories_start, strict=True)
    )

    # (3) Every output at once; the carried h changes only at valid steps (and resets).
    hs = form.readout(params, memories, m_new, px)
    h_start = cell.output(start)

    def output_step(_, pq, h_t):
        return (jnp.zeros_like(pq[0]), h_t[0]), h_t[0]

    one = jnp.ones(h_start.shape[:-1] + (1,), h_start.dtype)
    h_reset = cell.output(seq.carry0)
    a_h, b_h = masked_maps(
        output_step, lambda *_: (one, jnp.zeros_like(h_start)), (jnp.zeros_like(one), h_reset), hs
    )
    h_last = affine_scan(a_h, b_h, h_start, algorithm)
    final = last((h_last, memories, m_new), (h_start, memories_start, m_start))
    return zero_invalid(hs, seq.valid), form.pack(*final)


def _steps(seq: Sequences, lo: int, hi: int, n: Optional[int] = None) -> Sequences:
    """Steps lo..hi-1 of every time-major array; with `n`, as `[n, (hi - lo) / n, ...]`."""

    def cut(m: Array) -> Array:
        m = m[lo:hi]
        return m if n is None else jnp.reshape(m, (n, (hi - lo) // n) + m.shape[1:])

    def cut_optional(m: Optional[Array]) -> Optional[Array]:
        return None if m is None else cut(m)

    return Sequences(cut(seq.xs), cut_optional(seq.valid), cut_optional(seq.reset), seq.carry0)


def linear_unroll(
    cell: Cell,
    params: Params,
    seq: Sequences,
    algorithm: str,
    chunk: Optional[int],
) -> tuple[Array, Carry]:
    """Every state and output at once; `ys: [T, B, O]` in processing order.

    Args:
      algorithm: the affine scan's algorithm (`_affine_scan.ALGORITHMS`).
      chunk: steps per chunk (module docstring); None: one pass.
    """
    T = seq.xs.shape[0]

    def one_pass(cell, params, seq, start, algorithm):
        if cell.stabilised_linear:
            return stabilised_pass(cell, params, seq, start, algorithm)
        return linear_pass(cell, params, seq, start, algorithm)

    if chunk is None or T // chunk <= 1:
        return one_pass(cell, params, seq, seq.carry0, algorithm)
    n = T // chunk

    @jax.checkpoint
    def body(h, part):
        xs, valid, reset = part
        ys, h = one_pass(cell, params, Sequences(xs, valid, reset, seq.carry0), h, algorithm)
        return h, ys

    chunks = _steps(seq, 0, n * chunk, n)
    carry, ys = jax.lax.scan(body, seq.carry0, (chunks.xs, chunks.valid, chunks.reset))
    ys = jnp.reshape(ys, (n * chunk,) + ys.shape[2:])
    if n * chunk == T:
        return ys, carry
    ys_tail, carry = one_pass(cell, params, _steps(seq, n * chunk, T), carry, algorithm)
    return jnp.concatenate([ys, ys_tail], axis=0), carry

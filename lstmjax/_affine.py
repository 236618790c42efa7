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

Cost: work O(T B H); memory O(T B H) for the outputs plus O(chunk B H) of
intermediates. The gradient is autodiff of the same exact computation:
per chunk, the recomputed forward pass and one affine scan backward in
time (the affine scan's own transpose, `_affine_scan.py`), of the same
order.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from lstmjax._affine_scan import ALGORITHMS, affine_scan, default_algorithm
from lstmjax._cell import Cell
from lstmjax._checks import check_size
from lstmjax._sequence import Sequences, masked_recur, zero_invalid
from lstmjax._typing import Array, Carry, Params

CPU_CHUNK_STEPS = 512  # the measured default chunk on CPU (module docstring)


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
        than one pass at T = 10,000), one chunk of the whole sequence
        elsewhere. Same results either way.
    """

    algorithm: str = "auto"
    chunk: Optional[int] = None

    def __post_init__(self):
        if self.algorithm != "auto" and self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"Affine: algorithm must be one of {['auto', *ALGORITHMS]}; got {self.algorithm!r}."
            )
        if self.chunk is not None:
            check_size("Affine: chunk", self.chunk)

    def resolve(self, platform: str) -> Affine:
        """This strategy with "auto" (and chunk None) decided for `platform`."""
        algorithm = self.algorithm
        if algorithm == "auto":
            algorithm = default_algorithm(platform)
        chunk = self.chunk
        if chunk is None and platform == "cpu":
            chunk = CPU_CHUNK_STEPS
        return dataclasses.replace(self, algorithm=algorithm, chunk=chunk)

    def run(self, cell: Cell, params: Params, seq: Sequences) -> tuple[Array, Carry, None]:
        """`(ys [T, B, O], carry, None)` in processing order (a resolved strategy)."""
        if not cell.linear_in_carry:
            raise ValueError(
                f"method=Affine needs a cell whose step is affine in its carry "
                f"(Cell.linear_in_carry, e.g. lj.min_gru, lj.min_lstm); {cell.name} is not. "
                f"Use method='scan' or a parallel solver ('newton', 'quasi_newton', 'elk')."
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
    if chunk is None or T // chunk <= 1:
        return linear_pass(cell, params, seq, seq.carry0, algorithm)
    n = T // chunk

    @jax.checkpoint
    def body(h, part):
        xs, valid, reset = part
        ys, h = linear_pass(cell, params, Sequences(xs, valid, reset, seq.carry0), h, algorithm)
        return h, ys

    chunks = _steps(seq, 0, n * chunk, n)
    carry, ys = jax.lax.scan(body, seq.carry0, (chunks.xs, chunks.valid, chunks.reset))
    ys = jnp.reshape(ys, (n * chunk,) + ys.shape[2:])
    if n * chunk == T:
        return ys, carry
    ys_tail, carry = linear_pass(cell, params, _steps(seq, n * chunk, T), carry, algorithm)
    return jnp.concatenate([ys, ys_tail], axis=0), carry

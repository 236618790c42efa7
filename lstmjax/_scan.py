"""The sequential strategy `Scan`: one `lax.scan` step per time step (with optional remat).

Two layout choices measure differently per device, so "auto" resolves them
from the platform of the arrays (`_methods.resolve`):

- `projection`: "hoisted" computes `x_t W_x + b` for every step at once (one
  `[T*B, I] @ [I, G*H]` matmul before the loop, a `[T, B, G*H]` buffer);
  "per_step" computes it inside each step. On XLA:CPU the per-step form
  measured faster (the big buffer costs more than the matmuls save); on
  accelerators, where each step is latency-bound, hoisting wins.
- `column_blocks`: close over mid-sized weight matrices in column blocks, so
  that XLA:CPU keeps each step's gradient accumulation on one thread
  (`column_blocks` below). Only useful on CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import jax
import jax.numpy as jnp

from lstmjax._cell import Cell
from lstmjax._checks import check_size, scalar
from lstmjax._remat import scan_with_remat
from lstmjax._sequence import Sequences, masked_recur
from lstmjax._typing import Array, Carry, Params

# XLA:CPU splits an elementwise kernel of 65,536 elements or more across its
# threads; blocks of at most half that stay on one thread (measured).
ACCUMULATION_BLOCK = 32768


PROJECTIONS = ("auto", "hoisted", "per_step")


@dataclasses.dataclass(frozen=True)
class Scan:
    """The sequential strategy: one `lax.scan` step per time step (depth T).

    Attributes:
      unroll: steps per scan iteration (`jax.lax.scan`'s `unroll`), an int >= 1.
      remat: gradient checkpointing for long sequences. False (default):
        plain BPTT, every step's intermediates kept for the backward pass
        (memory ~ T). True: checkpoint every k = round(sqrt(T)) steps; an
        int k: every k steps. Only the carries at segment boundaries are
        stored and each segment's forward is recomputed during the backward
        pass (memory ~ T/k + k steps, about 4/3 of the time). Same results.
      projection: where the input projection `x_t W_x + b` is computed:
        "hoisted" (all steps at once before the loop), "per_step" (inside
        the loop) or "auto" (default: per step on CPU, hoisted on GPU/TPU,
        from the platform of the arrays). Same results either way.
      column_blocks: close over mid-sized weights in column blocks (faster
        BPTT on XLA:CPU); "auto" (default: on CPU only), True or False.
    """

    unroll: int = 1
    remat: Union[bool, int] = False
    projection: str = "auto"
    column_blocks: Union[str, bool] = "auto"

    def __post_init__(self):
        # Stored as Python values (`_checks`' one rule), so that equal options hash
        # equal and share a compiled program.
        set_ = object.__setattr__  # a frozen dataclass, during __post_init__
        set_(self, "unroll", check_size("Scan: unroll", self.unroll))
        remat = scalar("Scan: remat", self.remat)
        if not isinstance(remat, bool):
            try:
                remat = check_size("Scan: remat", remat)
            except (TypeError, ValueError):
                raise ValueError(
                    "Scan: remat must be False, True or a positive int (steps per segment); "
                    f"got {self.remat!r}."
                ) from None
        set_(self, "remat", remat)
        if not (isinstance(self.projection, str) and self.projection in PROJECTIONS):
            raise ValueError(
                f"Scan: projection must be one of {list(PROJECTIONS)}; got {self.projection!r}."
            )
        blocks = self.column_blocks
        if not (isinstance(blocks, str) and blocks == "auto"):
            blocks = scalar("Scan: column_blocks", blocks)
            if not isinstance(blocks, bool):
                raise ValueError(
                    "Scan: column_blocks must be 'auto', True or False; got "
                    f"{self.column_blocks!r}."
                )
        set_(self, "column_blocks", blocks)

    def resolve(self, platform: str) -> Scan:
        """This strategy with "auto" decided for `platform` (see the module docstring)."""
        projection = self.projection
        if projection == "auto":
            projection = "per_step" if platform == "cpu" else "hoisted"
        blocks = self.column_blocks
        if blocks == "auto":
            blocks = platform == "cpu"
        return dataclasses.replace(self, projection=projection, column_blocks=blocks)

    def run(self, cell: Cell, params: Params, seq: Sequences) -> tuple[Array, Carry, None]:
        """`(ys [T, B, O], carry, None)` in processing order (a resolved strategy)."""
        remat = None if self.remat is True else self.remat
        ys, carry = scan(
            cell,
            params,
            seq,
            hoisted=self.projection == "hoisted",
            blocks=bool(self.column_blocks),
            unroll=self.unroll,
            remat=remat,
        )
        return ys, carry, None


def column_blocks(params: Params) -> Params:
    """Each mid-sized 2-D weight `[K, N]` as a list of column blocks.

    Backpropagation through `lax.scan` adds every step's weight gradient into
    an accumulator. XLA:CPU splits an add of 65,536 elements or more (e.g.
    `[128, 512]`, an LSTM's W_h at H=128) across its threads, and for one
    such add per step the hand-off costs more than the add itself. Closing
    over column blocks of at most ACCUMULATION_BLOCK elements, joined again
    inside the step (XLA hoists the join out of the loop), gives one
    single-threaded add per block. Smaller matrices are left alone (they
    are not split across threads, and more blocks only add kernels), and
    so are matrices over four blocks' worth: their adds are large enough
    for the thread split to pay.
    Measured with `benchmarks/benchmark.py --variants fused-accumulation`.
    """

    def split(a):
        if jnp.ndim(a) != 2 or not 2 * ACCUMULATION_BLOCK <= a.size <= 4 * ACCUMULATION_BLOCK:
            return a
        n = 1
        while a.size // n > ACCUMULATION_BLOCK and a.shape[1] % (2 * n) == 0:
            n *= 2
        return jnp.split(a, n, axis=1) if n > 1 else a

    return jax.tree_util.tree_map(split, params)


def join_blocks(blocks: Params) -> Params:
    """Inverse of `column_blocks`."""
    return jax.tree_util.tree_map(
        lambda b: jnp.concatenate(b, axis=1) if isinstance(b, list) else b,
        blocks,
        is_leaf=lambda b: isinstance(b, list),
    )


def scan(
    cell: Cell,
    params: Params,
    seq: Sequences,
    *,
    hoisted: bool,
    blocks: bool,
    unroll: int,
    remat: Optional[int] | bool,
) -> tuple[Array, Carry]:
    """Run the prepared sequences step by step.

    Args:
      hoisted: compute the input projection of all steps before the loop.
      blocks: close over weights in column blocks (see `column_blocks`).
      unroll: `lax.scan`'s unroll factor.
      remat: False for plain BPTT; None (sqrt(T) steps) or an int k for
        gradient checkpointing every k steps (see `_remat.py`).

    Returns:
      `(ys, carry)` with `ys: [T, B, output_size]` in processing order.
    """
    closed = column_blocks(params) if blocks else params

    def body(carry, inputs):
        x, valid, reset = inputs
        step_params = join_blocks(closed)
        px = x if hoisted else cell.project(step_params, x)
        return masked_recur(cell.recur, step_params, carry, px, valid, reset, seq.carry0)

    inputs = (seq.xs, seq.valid, seq.reset)
    if remat is False:
        if hoisted:
            inputs = (cell.project(params, seq.xs),) + inputs[1:]
        carry, ys = jax.lax.scan(body, seq.carry0, inputs, unroll=unroll)
        return ys, carry
    # Hoisting happens per segment, inside the checkpoint, so that the
    # [T, B, G*H] projection is recomputed rather than stored.
    prepare = (lambda seg: (cell.project(params, seg[0]),) + seg[1:]) if hoisted else None
    carry, ys = scan_with_remat(body, seq.carry0, inputs, remat, unroll=unroll, prepare=prepare)
    return ys, carry

"""The sequential strategy: one `lax.scan` step per time step (with optional remat)."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Carry, Cell, Params
from lstmjax._remat import scan_with_remat
from lstmjax._sequence import Sequences, masked_recur

# XLA:CPU splits an elementwise kernel of 65,536 elements or more across its
# threads; blocks of at most half that stay on one thread (measured).
ACCUMULATION_BLOCK = 32768


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
    Measured with `experiments/benchmark.py --variants fused-accumulation`.
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

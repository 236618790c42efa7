"""Unrolling a cell through time on `jax.lax.scan`."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Carry, Cell, Params
from lstmjax._checks import check_carry, check_features, check_float, check_lengths
from lstmjax._remat import scan_with_remat


def hoist_projection() -> bool:
    """Whether `unroll` computes the input projection of all steps at once.

    Hoisting turns T small matmuls `x_t @ W_x` into one `[T*B, I] @ [I, G*H]`
    matmul before the scan, leaving only `h @ W_h` inside the loop; the price
    is a `[T, B, G*H]` buffer. Which wins depends on the backend: see
    `experiments/benchmark.py` and the README's performance notes.
    """
    return jax.default_backend() != "cpu"


# XLA:CPU splits an elementwise kernel of 65,536 elements or more across its
# threads; blocks of at most half that stay on one thread (measured).
ACCUMULATION_BLOCK = 32768


def split_accumulation() -> bool:
    """Whether `unroll` closes over mid-sized weight matrices in column blocks."""
    return jax.default_backend() == "cpu"


def _column_blocks(params: Params) -> Params:
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


def _join_blocks(blocks: Params) -> Params:
    """Inverse of `_column_blocks`."""
    return jax.tree_util.tree_map(
        lambda b: jnp.concatenate(b, axis=1) if isinstance(b, list) else b,
        blocks,
        is_leaf=lambda b: isinstance(b, list),
    )


def check_remat(remat) -> Optional[int]:
    """`remat` as a segment length: True -> None (sqrt(T)), a positive int -> itself."""
    if remat is True:
        return None
    if isinstance(remat, int) and not isinstance(remat, bool) and remat >= 1:
        return remat
    raise ValueError(
        f"remat must be False, True or a positive int (steps per segment); got {remat!r}."
    )


def reverse_within_lengths(xs: Array, lengths: Array) -> Array:
    """Reverse each sequence of a time-major batch within its own length.

    xs: [T, B, ...]; lengths: [B]. Position t of sequence b takes position
    lengths[b] - 1 - t when t < lengths[b]; padding stays where it is. The map
    is its own inverse, so applying it twice restores `xs`.
    """
    T = xs.shape[0]
    t = jnp.arange(T)[:, None]
    idx = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # [T, B]
    idx = jnp.reshape(idx, idx.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, idx, axis=0)


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Optional[Carry] = None,
    *,
    lengths: Optional[Array] = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int = 1,
    remat: bool | int = False,
) -> tuple[Array, Carry]:
    """Run `cell` over a batch of sequences.

    Backpropagation through time is `jax.grad` through this function.

    Args:
      cell: a `Cell` (`lstmjax.rnn`, `lstm`, `gru`, `jordan`).
      params: the cell's parameters.
      xs: `[batch, time, features]`, or `[time, batch, features]` with
        `time_major=True`; a floating-point dtype.
      carry: initial carry with leading shape `[batch]`; None means zeros.
      lengths: optional int `[batch]`, each in [0, T]. Past a sequence's
        length its carry stops changing and its outputs are zero, so the
        returned carry is the one after its last valid step. Checked when
        concrete; under `jit`, values outside [0, T] act as if clipped.
      reverse: run from the last step to the first. With `lengths`, each
        sequence is reversed within its own length (PyTorch's packed
        sequences), and outputs are returned in the original time order.
      time_major: layout of `xs` and of the returned outputs.
      unroll: steps per scan iteration (`jax.lax.scan`'s `unroll`).
      remat: gradient checkpointing for long sequences. False: plain BPTT,
        every step's intermediates kept for the backward pass (memory ~ T).
        True: checkpoint every k = round(sqrt(T)) steps; an int: every k
        steps. Only the carries at segment boundaries are stored and each
        segment's forward is recomputed during the backward pass (memory
        ~ T/k + k steps, about 4/3 of the time). Same results and gradients.

    Returns:
      `(ys, carry)`: `ys` `[batch, time, output_size]` (or time-major) and the
      final carry. With T = 0, `ys` is empty and `carry` the initial one.
    """
    check_float(xs, "xs")
    if jnp.ndim(xs) != 3:
        layout = "[time, batch, features]" if time_major else "[batch, time, features]"
        raise ValueError(
            f"unroll: xs must have rank 3, {layout}; got shape {jnp.shape(xs)}. "
            "Add a batch axis with xs[None] for a single sequence."
        )
    xs_t = xs if time_major else jnp.swapaxes(xs, 0, 1)  # [T, B, F]
    T, B, _ = xs_t.shape
    check_features(xs_t, params.w_x.shape[0], cell.name, "xs")
    dtype = jnp.result_type(xs_t, *jax.tree_util.tree_leaves(params))
    expected = jax.eval_shape(lambda: cell.initial_carry((B,)))
    if carry is None:
        carry = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, dtype), expected)
    else:
        carry = check_carry(carry, expected, cell.name)
        carry = jax.tree_util.tree_map(lambda c: jnp.asarray(c, dtype), carry)
    if lengths is not None:
        lengths = check_lengths(lengths, B, T)

    if reverse:
        xs_t = xs_t[::-1] if lengths is None else reverse_within_lengths(xs_t, lengths)

    hoisted = hoist_projection()
    blocks = _column_blocks(params) if split_accumulation() else params

    def body(carry, inputs):
        x, t = inputs
        step_params = _join_blocks(blocks)
        px = x if hoisted else cell.project(step_params, x)
        new_carry, y = cell.recur(step_params, carry, px)
        if lengths is not None:
            valid = (t < lengths)[:, None]  # [B, 1]
            new_carry = jax.tree_util.tree_map(
                lambda n, o: jnp.where(valid, n, o), new_carry, carry
            )
            y = jnp.where(valid, y, jnp.zeros_like(y))
        return new_carry, y

    steps = jnp.arange(T)
    if remat is False:
        inputs = cell.project(params, xs_t) if hoisted else xs_t
        carry, ys = jax.lax.scan(body, carry, (inputs, steps), unroll=unroll)
    else:
        # Hoisting happens per segment, inside the checkpoint, so that the
        # [T, B, G*H] projection is recomputed rather than stored.
        prepare = (lambda xt: (cell.project(params, xt[0]), xt[1])) if hoisted else None
        carry, ys = scan_with_remat(
            body, carry, (xs_t, steps), check_remat(remat), unroll=unroll, prepare=prepare
        )

    if reverse:
        ys = ys[::-1] if lengths is None else reverse_within_lengths(ys, lengths)
    if not time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    return ys, carry

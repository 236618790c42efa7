"""Gradient checkpointing for `lax.scan`: BPTT in memory sublinear in T.

Plain backpropagation through time keeps every step's intermediates (the
gate activations, the states) until the backward pass: memory grows as T.
`scan_with_remat` splits the T steps into segments of k steps and scans over
the segments; each segment is a `jax.checkpoint`-ed inner scan, so the
forward pass stores only the carry at each segment boundary (T/k carries).
The backward pass re-runs one segment's forward at a time, holding k steps
of intermediates. With k about sqrt(T) the stored intermediates are
O(sqrt(T)) instead of O(T), for one extra forward pass (about 4/3 of the
time of plain BPTT, since the backward costs about two forwards).

The scanned outputs (`ys`, `[T, ...]`) are still returned in full: they are
the function's result, not an intermediate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp

from lstmjax._checks import check_size
from lstmjax._typing import Carry, PyTree


def default_segment_length(length: int) -> int:
    """k = round(sqrt(T)), at least 1: balances T/k stored carries against k live steps."""
    return max(1, round(math.sqrt(length)))


def _scan_length(xs: PyTree) -> int:
    leaves = jax.tree_util.tree_leaves(xs)
    if not leaves:
        raise ValueError("scan_with_remat: xs must hold at least one array with a time axis.")
    lengths = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(
            "scan_with_remat: every leaf of xs needs the same leading (time) axis; "
            f"got leading sizes {sorted(lengths, key=str)}."
        )
    (length,) = lengths
    assert length is not None  # checked above
    return length


def _check_segment_length(segment_length: Any) -> int:
    return check_size("scan_with_remat: segment_length", segment_length)


def _segment_scan(body, prepare, unroll: int):
    """One checkpointed segment: `(carry, xs[k, ...]) -> (carry, ys[k, ...])`."""

    def run(carry, xs_segment):
        inputs = xs_segment if prepare is None else prepare(xs_segment)
        return jax.lax.scan(body, carry, inputs, unroll=unroll)

    # prevent_cse=False is safe (and faster) because the checkpoint is used
    # inside a scan, which already keeps XLA from merging the recomputation
    # with the forward pass.
    return jax.checkpoint(run, prevent_cse=False)


def scan_with_remat(
    body: Callable[[Carry, PyTree], tuple[Carry, PyTree]],
    carry: Carry,
    xs: PyTree,
    segment_length: Optional[int] = None,
    *,
    unroll: int = 1,
    prepare: Optional[Callable[[PyTree], PyTree]] = None,
) -> tuple[Carry, PyTree]:
    """`jax.lax.scan(body, carry, xs)` with gradient checkpointing every k steps.

    Same result and same gradients as the plain scan (up to floating-point
    summation order); only the memory/time trade-off of the backward pass
    differs. With T = n*k + r, the first n*k steps run as an outer scan over
    n checkpointed segments of k steps; the remaining r steps run as one
    more checkpointed segment.

    Args:
      body: `(carry, x_t) -> (carry, y_t)`, as for `lax.scan`.
      carry: the initial carry (any pytree).
      xs: pytree of arrays with a common leading time axis T, e.g. `[T, B, F]`.
      segment_length: k, the steps per checkpointed segment; None gives
        `round(sqrt(T))`. k >= T amounts to one checkpoint around the whole
        scan (no memory saving).
      unroll: `lax.scan`'s unroll factor for the inner (per-step) scan.
      prepare: optional function applied to each segment's inputs
        (`[k, ...] -> [k, ...]`, pytree in, pytree out) *inside* the
        checkpoint, e.g. the input projection of the k steps as one matmul.
        Its result is recomputed in the backward pass instead of being stored
        for all T steps. None feeds `xs` to `body` as is.

    Returns:
      `(carry, ys)`: the final carry and the stacked outputs, leading axis T.
    """
    T = _scan_length(xs)
    k = (
        default_segment_length(T)
        if segment_length is None
        else _check_segment_length(segment_length)
    )
    segment = _segment_scan(body, prepare, unroll)
    if T == 0:
        inputs = xs if prepare is None else prepare(xs)
        return jax.lax.scan(body, carry, inputs)
    n, r = divmod(T, k)
    ys_parts = []
    if n > 0:
        main = jax.tree_util.tree_map(lambda a: jnp.reshape(a[: n * k], (n, k) + a.shape[1:]), xs)
        carry, ys_main = jax.lax.scan(segment, carry, main)
        ys_parts.append(
            jax.tree_util.tree_map(lambda a: jnp.reshape(a, (n * k,) + a.shape[2:]), ys_main)
        )
    if r > 0:
        rest = jax.tree_util.tree_map(lambda a: a[n * k :], xs)
        carry, ys_rest = segment(carry, rest)
        ys_parts.append(ys_rest)
    if len(ys_parts) == 1:
        return carry, ys_parts[0]
    ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], axis=0), *ys_parts)
    return carry, ys

"""Sequences as `unroll`'s strategies see them: time-major, masked, in processing order.

Every strategy (the sequential scan, the parallel solvers) receives the same
prepared `Sequences` and applies the same per-step transform of the carry,
`masked_recur`, so lengths, resets and reverse mean one thing everywhere:

- past a sequence's length, and wherever `mask` is False, the step is the
  identity: the carry is kept and the output is zero. The inputs there are
  replaced by zeros *before* any arithmetic, so whatever lies in the padding
  (NaN, inf, 1e30) can reach neither a value nor a gradient (a `where` after
  the arithmetic would still send 0 * NaN = NaN into the gradients);
- where `resets[b, t]` holds, sequence b's carry is replaced by its initial
  carry before step t (a new episode or document starts at t);
- with `reverse`, each sequence is processed from its last valid step to its
  first, and a reset at t ends the backward pass over the segment that
  starts at t: the backward direction resets before step t - 1 in processing
  order, so each segment is run backward on its own.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._typing import Array, Carry, Params


class Sequences(NamedTuple):
    xs: Array  # [T, B, F], in processing order, padding zeroed
    valid: Optional[Array]  # [T, B] bool in processing order; None: every step valid
    reset: Optional[Array]  # [T, B] bool in processing order; None: no resets
    carry0: Carry  # each leaf [B, ...], the carry every sequence starts (and restarts) from


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


def to_processing_order(a: Array, lengths: Optional[Array], reverse: bool) -> Array:
    """A time-major per-step array `[T, B, ...]` in processing order (its own inverse)."""
    if not reverse:
        return a
    return a[::-1] if lengths is None else reverse_within_lengths(a, lengths)


def _backward_resets(resets_t: Array, lengths: Optional[Array]) -> Array:
    """Resets for the reverse direction, in original time order ([T, B]).

    Processing t after t + 1 crosses a boundary exactly when a segment starts
    at t + 1, so the carry is reset before step t when resets[t + 1] holds
    (and t + 1 is still a valid step).
    """
    shifted = jnp.concatenate([resets_t[1:], jnp.zeros_like(resets_t[:1])], axis=0)
    if lengths is None:
        return shifted
    t = jnp.arange(resets_t.shape[0])[:, None]
    return shifted & (t + 1 < lengths[None, :])


def prepare(
    xs_t: Array,
    carry0: Carry,
    lengths: Optional[Array],
    mask: Optional[Array],
    resets: Optional[Array],
    reverse: bool,
) -> Sequences:
    """Masks and processing order for checked time-major inputs.

    Args:
      xs_t: `[T, B, F]`; carry0: leaves `[B, ...]`; lengths: int32 `[B]` or
      None; mask, resets: bool `[T, B]` (time-major) or None.
    """
    T = xs_t.shape[0]
    in_length = None
    if lengths is not None:
        in_length = jnp.arange(T)[:, None] < lengths[None, :]  # [T, B]
    valid = in_length
    if mask is not None:
        valid = mask if valid is None else valid & mask
    if valid is not None:
        xs_t = zero_invalid(xs_t, valid)
    reset = None
    if resets is not None:
        reset = resets
        if reverse:
            reset = _backward_resets(reset, lengths)
        if in_length is not None:
            # A reset in the padding must not clear the final carry. (At a
            # masked step inside the sequence a reset still acts: the step
            # keeps the carry it was given, the reset one.)
            reset = reset & in_length
        reset = to_processing_order(reset, lengths, reverse)
    xs_t = to_processing_order(xs_t, lengths, reverse)
    if valid is not None and reverse:
        valid = to_processing_order(valid, lengths, reverse)
    return Sequences(xs_t, valid, reset, carry0)


def finish(ys_t: Array, lengths: Optional[Array], reverse: bool, time_major: bool) -> Array:
    """Outputs back in original time order and the caller's layout."""
    ys_t = to_processing_order(ys_t, lengths, reverse)
    return ys_t if time_major else jnp.swapaxes(ys_t, 0, 1)


def zero_invalid(x: Array, valid: Optional[Array]) -> Array:
    """`x` `[..., F]` with zeros where `valid` `[...]` is False (padding: inputs, outputs)."""
    return x if valid is None else jnp.where(valid[..., None], x, jnp.zeros_like(x))


def _select(mask: Array, a: Carry, b: Carry) -> Carry:
    """`a` where `mask[b]` holds, else `b`, leaf by leaf (leaves `[B, ...]`)."""
    return jax.tree_util.tree_map(
        lambda x, y: jnp.where(jnp.reshape(mask, mask.shape + (1,) * (x.ndim - 1)), x, y), a, b
    )


def masked_recur(
    recur,
    params: Params,
    carry: Carry,
    px: Any,
    valid: Optional[Array],
    reset: Optional[Array],
    carry0: Carry,
) -> tuple[Carry, Array]:
    """One step of `recur` with the step masks applied (`valid`, `reset`: bool `[B]`).

    `px` is whatever `recur` reads of the step's input (a cell's projected
    input; `_affine.stabilised_pass` also passes tuples).
    """
    if reset is not None:
        carry = _select(reset, carry0, carry)
    new_carry, y = recur(params, carry, px)
    if valid is not None:
        new_carry = _select(valid, new_carry, carry)
        y = zero_invalid(y, valid)
    return new_carry, y

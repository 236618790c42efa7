"""Loss functions for recurrent models, as pure jit-able functions.

Two basic losses (mean squared error, softmax cross-entropy over integer
token ids) and the three ways the lectures attach them to a recurrent net:

* many-to-one (`many_to_one`): one target per sequence, compared with the
  output at the sequence's last valid step;
* many-to-many, time-synchronous (`many_to_many`): one target per step,
  summed or averaged over the valid steps;
* next-token language modelling (`next_token`): the logits at step t predict
  token t + 1.

Padding never counts. A mask (boolean, True = counts) or per-sequence
`lengths` selects the positions that enter a loss; every other position is
replaced by a harmless value *before* any arithmetic, so padded values (even
NaN or inf, even out-of-range labels) change neither the loss nor its
gradient. Averages are over the valid positions; with none valid a loss is 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, Optional, Union

import jax
import jax.numpy as jnp

from lstmjax._array_checks import as_array, check_lengths, check_token_ids
from lstmjax._feedforward import last_valid
from lstmjax._typing import Array

Reduction = Literal["mean", "sum"]
PerPositionLoss = Callable[[Array, Array], Array]

__all__ = [
    "accuracy",
    "bits_per_char",
    "cross_entropy",
    "many_to_many",
    "many_to_one",
    "mse",
    "next_token",
    "perplexity",
    "sequence_mask",
    "squared_error",
    "token_nll",
]


# ----------------------------------------------------------------------------
# Checks and masking helpers
# ----------------------------------------------------------------------------


def _check_same_shape(a, b, what: str, names: tuple[str, str]) -> None:
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{what}: {names[0]} and {names[1]} must have the same shape; "
            f"got {jnp.shape(a)} and {jnp.shape(b)}."
        )


def _check_mask(mask, shape: tuple[int, ...], what: str) -> Array:
    """Return `mask` as bool, checking that its shape is a prefix of `shape`."""
    mask = jnp.asarray(mask)
    if jnp.shape(mask) != tuple(shape[: mask.ndim]):
        raise ValueError(
            f"{what}: mask must have the shape of the loss positions {tuple(shape)} "
            f"or a leading part of it; got {jnp.shape(mask)}."
        )
    return mask.astype(bool)


def _expand(mask: Array, ndim: int) -> Array:
    """Append size-1 axes to `mask` up to rank `ndim` (no rank promotion)."""
    return jnp.reshape(mask, jnp.shape(mask) + (1,) * (ndim - mask.ndim))


def _masked_mean(values: Array, mask: Optional[Array]) -> Array:
    """Mean of `values` over the positions where `mask` holds (0 if none)."""
    if mask is None:
        return jnp.mean(values)
    full = jnp.broadcast_to(_expand(mask, values.ndim), values.shape)
    total = jnp.sum(jnp.where(full, values, jnp.zeros_like(values)))
    count = jnp.sum(full).astype(values.dtype)
    return total / jnp.maximum(count, jnp.ones_like(count))


def _check_labels(logits, labels, what: str) -> None:
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"{what}: labels must be integer token ids; got {jnp.result_type(labels)}.")
    if jnp.ndim(logits) < 1 or jnp.shape(logits)[:-1] != jnp.shape(labels):
        raise ValueError(
            f"{what}: logits must be labels.shape + [num_classes]; got logits "
            f"{jnp.shape(logits)} and labels {jnp.shape(labels)}."
        )


def sequence_mask(lengths: Array, time: int) -> Array:
    """Boolean mask of the valid steps: `mask[b, t] = t < lengths[b]`.

    Args:
      lengths: int `[batch]`, each in [0, time] (checked as `unroll` checks them).
      time: T, the padded length.

    Returns:
      bool `[batch, time]`.
    """
    lengths = as_array(lengths, "lengths")
    if jnp.ndim(lengths) != 1:
        raise ValueError(
            f"sequence_mask: lengths must have shape [batch]; got {jnp.shape(lengths)}."
        )
    lengths = check_lengths(lengths, jnp.shape(lengths)[0], time, "sequence_mask")
    return jnp.arange(time)[None, :] < lengths[:, None]


# ----------------------------------------------------------------------------
# Per-position losses
# ----------------------------------------------------------------------------


def squared_error(pred: Array, target: Array) -> Array:
    """Squared error averaged over the last (feature) axis.

    Args:
      pred: `[..., F]`.
      target: `[..., F]`, the same shape as `pred`.

    Returns:
      `[...]`, one value per position.
    """
    _check_same_shape(pred, target, "squared_error", ("pred", "target"))
    return jnp.mean(jnp.square(pred - target), axis=-1)


def token_nll(logits: Array, labels: Array) -> Array:
    """Negative log-likelihood of integer labels under softmax(logits), in nats.

    Log-probabilities (e.g. from `lstmjax.softmax_readout`) work as logits too:
    log_softmax leaves them unchanged.

    Args:
      logits: `[..., V]`.
      labels: int `[...]`, each in [0, V).

    Returns:
      `[...]`, one value per position. Concrete labels outside [0, V) raise
      an error; under `jit` such a label gives NaN (never a plausible loss).
    """
    _check_labels(logits, labels, "token_nll")
    V = jnp.shape(logits)[-1]
    labels = check_token_ids(labels, V, "token_nll", "labels")
    labels = jnp.where(labels < 0, V, labels)  # out of range, not wrapped to the end
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, labels[..., None], axis=-1, mode="fill")
    return -picked[..., 0]


# ----------------------------------------------------------------------------
# Basic losses
# ----------------------------------------------------------------------------


def mse(pred: Array, target: Array, mask: Optional[Array] = None) -> Array:
    """Mean squared error over the valid entries.

    Args:
      pred: `[...]`, floating point.
      target: the same shape as `pred`, floating point.
      mask: optional bool of `pred`'s shape or a leading part of it (e.g.
        `[B, T]` for `[B, T, F]` predictions); True marks entries that count.

    Returns:
      Scalar: sum of (pred - target)^2 over valid entries / their number.
    """
    _check_same_shape(pred, target, "mse", ("pred", "target"))
    if mask is None:
        return jnp.mean(jnp.square(pred - target))
    mask = _check_mask(mask, jnp.shape(pred), "mse")
    full = jnp.broadcast_to(_expand(mask, jnp.ndim(pred)), jnp.shape(pred))
    # Zeros at padded entries before any arithmetic: they contribute exactly 0,
    # and a NaN or inf there reaches neither the loss nor a gradient.
    pred = jnp.where(full, pred, jnp.zeros_like(pred))
    target = jnp.where(full, target, jnp.zeros_like(target))
    return _masked_mean(jnp.square(pred - target), mask)


def cross_entropy(logits: Array, labels: Array, mask: Optional[Array] = None) -> Array:
    """Softmax cross-entropy over integer token ids, averaged over valid positions.

    Args:
      logits: `[..., V]` unnormalised scores (or log-probabilities).
      labels: int `[...]` in [0, V).
      mask: optional bool of `labels`' shape or a leading part of it.

    Returns:
      Scalar, in nats per valid position.
    """
    _check_labels(logits, labels, "cross_entropy")
    if mask is not None:
        mask = _check_mask(mask, jnp.shape(labels), "cross_entropy")
        full = jnp.broadcast_to(_expand(mask, jnp.ndim(labels)), jnp.shape(labels))
        # Replace padding before log_softmax so a NaN there cannot reach the gradient.
        logits = jnp.where(full[..., None], logits, jnp.zeros_like(logits))
        labels = jnp.where(full, labels, jnp.zeros_like(labels))
    return _masked_mean(token_nll(logits, labels), mask)


def accuracy(logits: Array, labels: Array, mask: Optional[Array] = None) -> Array:
    """Fraction of valid positions where argmax(logits) equals the label.

    Args:
      logits: `[..., V]`; labels: int `[...]`; mask: as in `cross_entropy`.

    Returns:
      Scalar float32 in [0, 1].
    """
    _check_labels(logits, labels, "accuracy")
    hits = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    if mask is not None:
        mask = _check_mask(mask, jnp.shape(labels), "accuracy")
    return _masked_mean(hits, mask)


# ----------------------------------------------------------------------------
# The three usage patterns
# ----------------------------------------------------------------------------

_BASIC = {"mse": mse, "cross_entropy": cross_entropy}
_PER_POSITION = {"mse": squared_error, "cross_entropy": token_nll}


def _pick(loss, table: dict, what: str):
    if callable(loss):
        return loss
    if loss not in table:
        raise ValueError(
            f"{what}: loss must be one of {sorted(table)} or a callable; got {loss!r}."
        )
    return table[loss]


def many_to_one(
    preds: Array,
    targets: Array,
    lengths: Optional[Array] = None,
    *,
    loss: Union[str, Callable[..., Array]] = "mse",
) -> Array:
    """Loss on each sequence's output at its last valid step.

    Args:
      preds: `[B, T, F]` per-step outputs (predictions, or logits with F = V),
        as `many_to_many` takes them.
      targets: `[B, F]` floats for "mse", int `[B]` for "cross_entropy".
      lengths: optional int `[B]`; None means every sequence has length T.
        Sequences of length 0 have no output and do not count.
      loss: "mse", "cross_entropy" or a callable with their signature,
        `(pred [B, F], targets, mask [B] or None) -> scalar`.

    Returns:
      Scalar, averaged over the sequences that count.
    """
    fn = _pick(loss, _BASIC, "many_to_one")
    if jnp.ndim(preds) != 3:
        raise ValueError(
            f"many_to_one: preds must be [batch, time, features]; got {jnp.shape(preds)}."
        )
    mask = None if lengths is None else jnp.asarray(lengths) > 0
    return fn(last_valid(preds, lengths), targets, mask)


def many_to_many(
    preds: Array,
    targets: Array,
    lengths: Optional[Array] = None,
    *,
    mask: Optional[Array] = None,
    loss: Union[str, PerPositionLoss] = "mse",
    reduction: Reduction = "mean",
) -> Array:
    """Time-synchronous loss: one target per step, over the valid steps only.

    Args:
      preds: `[B, T, F]` (for "cross_entropy", logits with F = V).
      targets: `[B, T, F]` floats for "mse", int `[B, T]` for "cross_entropy".
      lengths: optional int `[B]`: step t of sequence b counts if t < lengths[b].
      mask: optional bool `[B, T]`, combined with `lengths` (both must hold).
      loss: "mse" (squared error averaged over features), "cross_entropy"
        (nats), or a callable `(preds, targets) -> [B, T]` per-step losses.
      reduction: "mean" averages over all valid steps of the batch; "sum"
        sums over each sequence's valid steps and averages over the batch
        (the loss L = sum_t L_t of backpropagation through time).

    Returns:
      Scalar.
    """
    fn = _pick(loss, _PER_POSITION, "many_to_many")
    if jnp.ndim(preds) != 3:
        raise ValueError(
            f"many_to_many: preds must be [batch, time, features]; got {jnp.shape(preds)}."
        )
    B, T = jnp.shape(preds)[:2]
    valid = jnp.ones((B, T), bool)
    if lengths is not None:
        valid = valid & sequence_mask(lengths, T)
    if mask is not None:
        valid = valid & _check_mask(mask, (B, T), "many_to_many")
    preds, targets = _neutralise_padding(preds, targets, valid)
    per_step = fn(preds, targets)
    if jnp.shape(per_step) != (B, T):
        raise ValueError(
            f"many_to_many: the loss must give [B, T] = {(B, T)}; got {jnp.shape(per_step)}."
        )
    if reduction == "mean":
        return _masked_mean(per_step, valid)
    if reduction == "sum":
        total = jnp.sum(jnp.where(valid, per_step, jnp.zeros_like(per_step)))
        return total / B
    raise ValueError(f"many_to_many: reduction must be 'mean' or 'sum'; got {reduction!r}.")


def _neutralise_padding(preds, targets, valid):
    """Put zeros at padded steps so that padding reaches neither loss nor gradient."""
    preds = jnp.where(_expand(valid, jnp.ndim(preds)), preds, jnp.zeros_like(preds))
    if jnp.shape(targets)[:2] == jnp.shape(valid):
        targets = jnp.where(_expand(valid, jnp.ndim(targets)), targets, jnp.zeros_like(targets))
    return preds, targets


def next_token(logits: Array, tokens: Array, lengths: Optional[Array] = None) -> Array:
    """Language-modelling cross-entropy: the logits at step t predict token t + 1.

    Two layouts of `tokens` are accepted, told apart by their length:
    * `[B, T + 1]`, a window whose first T tokens were the model's input
      (`logits = model(tokens[:, :-1])`); all T logits are scored;
    * `[B, T]`, the same tokens the model read; the last logit has no target
      and is dropped.

    Args:
      logits: `[B, T, V]`.
      tokens: int `[B, T + 1]` or `[B, T]`, as above.
      lengths: optional int `[B]`, the number of valid tokens in each row of
        `tokens`; a row of n tokens gives n - 1 predictions.

    Returns:
      Scalar: mean cross-entropy in nats per predicted token.
    """
    if jnp.ndim(logits) != 3 or jnp.ndim(tokens) != 2:
        raise ValueError(
            f"next_token: logits must be [B, T, V] and tokens [B, T + 1] or [B, T]; got "
            f"{jnp.shape(logits)} and {jnp.shape(tokens)}."
        )
    B, T, _ = jnp.shape(logits)
    if jnp.shape(tokens) == (B, T + 1):
        preds = logits
    elif jnp.shape(tokens) == (B, T):
        preds = logits[:, :-1]
    else:
        raise ValueError(
            f"next_token: tokens must be [B, T + 1] = {(B, T + 1)} or [B, T] = {(B, T)} "
            f"for logits {jnp.shape(logits)}; got {jnp.shape(tokens)}."
        )
    targets = tokens[:, 1:]
    mask = None
    if lengths is not None:
        lengths = check_lengths(lengths, B, jnp.shape(tokens)[1], "next_token")
        mask = sequence_mask(jnp.maximum(lengths - 1, 0), targets.shape[1])
    return cross_entropy(preds, targets, mask)


# ----------------------------------------------------------------------------
# Language-model units
# ----------------------------------------------------------------------------


def bits_per_char(ce_nats: Union[float, Array]) -> Union[float, Array]:
    """Convert a cross-entropy in nats per character to bits per character."""
    return ce_nats / math.log(2.0)


def perplexity(ce_nats: Union[float, Array]) -> Array:
    """Perplexity exp(cross-entropy in nats): the effective branching factor."""
    return jnp.exp(ce_nats)

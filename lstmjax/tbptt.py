"""Truncated backpropagation through time over a long stream.

The stream `[B, T, ...]` is cut into `T // k` chunks of `k` steps. Each
chunk starts from the carry the previous chunk ended with, but the gradient
is stopped there (`jax.lax.stop_gradient`): the forward pass sees the whole
history, the backward pass only the last `k` steps. This is how char-rnn
trains a language model on a long text. It works for any model whose apply
function takes and returns a carry:

    apply_fn(params, xs_chunk, carry) -> (predictions, carry)

for example `lambda p, xs, c: lj.unroll(cell, p, xs, c)` followed by a
readout, or `net.apply` of a stacked `lj.recurrent` net (PyTorch carry
layout). The loop over chunks is a `lax.scan` inside one jitted function.

To train on a stream with `train.fit` (checkpoints, resume, logs), use
`make_stream_step` and `stream_batches`: one chunk per update, the carry
kept in `TrainState.carry`, so a checkpoint holds it and a resumed run
continues the stream where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from lstmjax._training.step import TrainState, apply_gradients, make_clipper, split_batch
from lstmjax._training.stream import StreamChunk as StreamChunk
from lstmjax._training.stream import make_stream_step as make_stream_step
from lstmjax._training.stream import reset_carry as reset_carry
from lstmjax._training.stream import stream_batches as stream_batches

Array = jax.Array
Carry = Any
CarryApplyFn = Callable[..., tuple[Any, Carry]]  # (params, xs, carry) -> (predictions, carry)


def split_chunks(x: Any, chunk_len: int) -> Any:
    """Cut every leaf `[B, T, ...]` of `x` into `[T // k, B, k, ...]`, chunk axis first.

    Raises:
      ValueError: T is not a multiple of `chunk_len`, or a leaf has no time axis.
    """
    if isinstance(chunk_len, bool) or not isinstance(chunk_len, int) or chunk_len < 1:
        raise ValueError(f"chunk_len must be a positive int; got {chunk_len!r}.")

    def one(leaf):
        shape = jnp.shape(leaf)
        if len(shape) < 2:
            raise ValueError(f"tbptt: stream arrays must be [batch, time, ...]; got shape {shape}.")
        B, T = shape[:2]
        if T % chunk_len:
            raise ValueError(
                f"tbptt: the stream has T={T} steps (shape {shape}), not a multiple of "
                f"chunk_len={chunk_len}; trim it to {T - T % chunk_len} steps."
            )
        chunks = jnp.reshape(leaf, (B, T // chunk_len, chunk_len) + shape[2:])
        return jnp.swapaxes(chunks, 0, 1)

    return jax.tree_util.tree_map(one, x)


def _chunk_loss(apply_fn: CarryApplyFn, loss_fn: Callable, with_key: bool = False) -> Callable:
    """`(params, xs, ys, carry, key=None) -> (loss, carry_out)` with the incoming gradient cut."""

    def loss(params, xs, ys, carry, key=None):
        carry = jax.lax.stop_gradient(carry)  # truncation: no gradient into earlier chunks
        if with_key:
            predictions, carry_out = apply_fn(params, xs, carry, key)
        else:
            predictions, carry_out = apply_fn(params, xs, carry)
        return loss_fn(predictions, ys), carry_out

    return loss


def tbptt_grads(
    apply_fn: CarryApplyFn,
    loss_fn: Callable,
    params: Any,
    stream: tuple[Any, Any],
    chunk_len: int,
    carry: Carry,
) -> tuple[Array, Any, Carry]:
    """Per-chunk losses and truncated gradients at fixed `params` (no update).

    Args:
      apply_fn: `(params, xs, carry) -> (predictions, carry)`.
      loss_fn: `(predictions, ys) -> scalar`, the loss of one chunk.
      params: the model parameters.
      stream: `(xs, ys)`, each `[B, T, ...]` with T a multiple of `chunk_len`.
      chunk_len: k, the steps per chunk (and the truncation length).
      carry: the carry before the first step.

    Returns:
      `(losses, grads, carry)`: losses `[T // k]`; grads with the structure
      of `params`, each leaf stacked `[T // k, ...]` (chunk j's gradient with
      respect to its own k steps only); the carry after the whole stream.
    """
    xs, ys = split_batch(stream)
    value_and_grad = jax.value_and_grad(_chunk_loss(apply_fn, loss_fn), has_aux=True)

    def body(carry, chunk):
        (loss, carry), grads = value_and_grad(params, chunk[0], chunk[1], carry)
        return carry, (loss, grads)

    carry, (losses, grads) = jax.lax.scan(
        body, carry, (split_chunks(xs, chunk_len), split_chunks(ys, chunk_len))
    )
    return losses, grads, carry


def make_tbptt_step(
    apply_fn: CarryApplyFn,
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    chunk_len: int,
    clip_norm: Optional[float] = None,
    *,
    with_key: bool = False,
) -> Callable[[TrainState, Carry, tuple[Any, Any]], tuple[TrainState, Carry, dict]]:
    """Build a jitted `(state, carry, (xs, ys)) -> (state, carry, metrics)` over a stream.

    One optimizer update per chunk of `chunk_len` steps, in order: chunk j runs
    forward from the carry chunk j-1 ended with (computed with the parameters
    of that moment), backpropagates through its own steps only, and updates
    the parameters before chunk j+1. Call it again with the returned carry on
    the next stretch of the stream to go on.

    Args:
      apply_fn: `(params, xs, carry) -> (predictions, carry)`.
      loss_fn: `(predictions, ys) -> scalar`.
      optimizer: any `optax.GradientTransformation` (state from `train.init_state`).
      chunk_len: steps per chunk.
      clip_norm: global-norm clipping of each chunk's gradient, as in `make_train_step`.
      with_key: call `apply_fn(params, xs, carry, key)` with a key split from
        `state.rng` for each chunk (e.g. for dropout), as `make_train_step` does.

    Returns:
      The step; its metrics are those of `make_train_step` with one entry per
      chunk: loss `[n]`, grad_norm `[n]` (before clipping), grad_norms (dict
      of `[n]`), update_norm `[n]`, finite `[n]`. A chunk with non-finite
      values leaves params and opt_state unchanged.
    """
    clip = make_clipper(clip_norm)
    value_and_grad = jax.value_and_grad(_chunk_loss(apply_fn, loss_fn, with_key), has_aux=True)

    def update(state: TrainState, carry: Carry, chunk) -> tuple[TrainState, Carry, dict]:
        rng, key = jax.random.split(state.rng)  # as in make_train_step
        (loss, carry), grads = value_and_grad(state.params, chunk[0], chunk[1], carry, key)
        state, metrics = apply_gradients(optimizer, clip, state, rng, loss, grads)
        return state, carry, metrics

    def step(state: TrainState, carry: Carry, stream) -> tuple[TrainState, Carry, dict]:
        xs, ys = split_batch(stream)

        def body(state_and_carry, chunk):
            state, carry, metrics = update(*state_and_carry, chunk)
            return (state, carry), metrics

        chunks = (split_chunks(xs, chunk_len), split_chunks(ys, chunk_len))
        (state, carry), metrics = jax.lax.scan(body, (state, carry), chunks)
        return state, carry, metrics

    return jax.jit(step)

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

Both ways of training on a stream are transforms of the one step from
`train.make_train_step` (whose state holds the carry):

    step = train.make_train_step(apply_fn, loss_fn, optimizer)
    state = train.init_state(params, optimizer, carry=carry0)
    # every chunk of a stream in one jitted scan, one update per chunk:
    state, metrics = tbptt.chunked(step, chunk_len)(state, (xs, ys))
    # or one chunk per `fit` update (checkpoints, resume, logs):
    state, history = train.fit(tbptt.stream(step, carry0), state,
                               tbptt.stream_batches(xs, ys, chunk_len), num_steps)

With `fit`, the carry is kept in `TrainState.carry`, so a checkpoint holds
it and a resumed run continues the stream where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from lstmjax._checks import check_size
from lstmjax._training.state import TrainState
from lstmjax._training.step import StepFn, split_batch
from lstmjax._training.stream import StreamChunk as StreamChunk
from lstmjax._training.stream import reset_carry as reset_carry
from lstmjax._training.stream import stream as stream
from lstmjax._training.stream import stream_batches as stream_batches
from lstmjax._typing import Array, Carry

CarryApplyFn = Callable[..., tuple[Any, Carry]]  # (params, xs, carry) -> (predictions, carry)


def split_chunks(x: Any, chunk_len: int) -> Any:
    """Cut every leaf `[B, T, ...]` of `x` into `[T // k, B, k, ...]`, chunk axis first.

    Raises:
      ValueError: T is not a multiple of `chunk_len`, or a leaf has no time axis.
    """
    chunk_len = check_size("chunk_len", chunk_len)

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


def _chunk_loss(apply_fn: CarryApplyFn, loss_fn: Callable) -> Callable:
    """`(params, xs, ys, carry) -> (loss, carry_out)` with the incoming gradient cut."""

    def loss(params, xs, ys, carry):
        carry = jax.lax.stop_gradient(carry)  # truncation: no gradient into earlier chunks
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


def chunked(step: StepFn, chunk_len: int) -> StepFn:
    """Turn a training step into one update per chunk over a whole stream, in one jitted scan.

    Chunk j runs forward from the carry chunk j-1 ended with (computed with
    the parameters of that moment), backpropagates through its own steps
    only, and updates the parameters before chunk j+1. The carry travels in
    `state.carry`: start from `init_state(params, optimizer, carry=c0)` and
    read `state.carry` after the call to go on with the next stretch.

    Args:
      step: `(state, (xs, ys)) -> (state, metrics)` from
        `train.make_train_step`, whose `apply_fn` is
        `(params, xs, carry) -> (predictions, carry)` (the state's carry
        makes the step call it so).
      chunk_len: steps per chunk (the truncation length).

    Returns:
      The jitted `(state, (xs, ys)) -> (state, metrics)` over a stream
      `[B, T, ...]` with T a multiple of `chunk_len`; each metric of
      `make_train_step` gets one entry per chunk: loss `[n]`, grad_norm
      `[n]`, grad_norms (dict of `[n]`), update_norm `[n]`, finite `[n]`.
      A chunk with non-finite values leaves params, opt_state and the
      carry unchanged.
    """
    chunk_len = check_size("chunk_len", chunk_len)

    def over_stream(state: TrainState, stream) -> tuple[TrainState, dict]:
        if state.carry is None:
            raise ValueError(
                "tbptt.chunked needs the carry in the state: "
                "init_state(params, optimizer, carry=initial_carry)."
            )
        xs, ys = split_batch(stream)
        chunks = (split_chunks(xs, chunk_len), split_chunks(ys, chunk_len))
        return jax.lax.scan(lambda s, chunk: step(s, chunk), state, chunks)

    return jax.jit(over_stream)


__all__ = [
    "StreamChunk",
    "chunked",
    "reset_carry",
    "split_chunks",
    "stream",
    "stream_batches",
    "tbptt_grads",
]

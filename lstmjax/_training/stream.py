"""Truncated BPTT inside `fit`: one chunk per step, the carry kept in the state.

`fit` calls `step(state, batch_fn(n))` once per update. For a long stream,
update n trains on chunk n: `stream_batches` returns chunk n of the stream
(a pure function of n, so a resumed run reads exactly the chunks it would
have read), and the step built by `make_stream_step` starts from the carry
the previous chunk ended with, stored in `TrainState.carry`. The gradient is
stopped at the chunk's start (`jax.lax.stop_gradient`): the forward pass
sees the whole history, the backward pass only the chunk's k steps. Since
the carry lives in the state, every checkpoint holds it, and a resumed run
continues the stream exactly where it stopped.

Resets: each chunk comes with `reset`, a bool per row (`[B]`); where it
holds, that row's carry goes back to the initial carry before the chunk (a
new pass over the text, or a new document starting at the chunk boundary).
Resets inside a chunk need the model itself to reset (`unroll`'s planned
`resets=` argument); when it lands, a `[B, k]` reset array should travel to
`apply_fn` in the same way.

    step = make_stream_step(apply_fn, loss_fn, optimizer, model.initial_carry(B))
    state = train.init_state(params, optimizer, key, carry=model.initial_carry(B))
    state, history = train.fit(step, state, stream_batches(xs, ys, k), num_steps)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstmjax._training.step import TrainState, apply_gradients, make_clipper, select_tree

Array = jax.Array
Carry = Any


class StreamChunk(NamedTuple):
    """One update's share of a stream.

    Attributes:
      xs: inputs `[B, k, ...]`, steps `[j k, (j + 1) k)` of every row.
      ys: targets `[B, k, ...]`.
      reset: bool `[B]`; where True, the row starts again from the initial carry.
    """

    xs: Any
    ys: Any
    reset: Array


def stream_batches(
    xs: Any, ys: Any, chunk_len: int, *, num_chunks: Optional[int] = None
) -> Callable[[int], StreamChunk]:
    """A `fit` batch source reading `[B, T, ...]` streams chunk by chunk, pass after pass.

    Update n reads chunk j = n mod J (J = `num_chunks`, default T // k): steps
    `[j k, (j + 1) k)` of every row. At j == 0 every row resets (each pass
    starts from a fresh carry, as char-rnn does).

    Args:
      xs: input streams, every leaf `[B, T, ...]` (host or device arrays).
      ys: target streams, the same B and T.
      chunk_len: k, the steps per chunk and the truncation length.
      num_chunks: chunks per pass (at most T // k); the steps past them are unused.

    Raises:
      ValueError: chunk_len is not a positive int, the leaves disagree on
        B or T, or T holds fewer than `num_chunks` chunks.
    """
    if isinstance(chunk_len, bool) or not isinstance(chunk_len, int) or chunk_len < 1:
        raise ValueError(f"chunk_len must be a positive int; got {chunk_len!r}.")
    shapes = {np.shape(leaf)[:2] for leaf in jax.tree_util.tree_leaves((xs, ys))}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(
            f"stream_batches: every leaf of xs and ys must be [batch, time, ...] with the "
            f"same batch and time; got leading shapes {sorted(shapes)}."
        )
    batch, length = next(iter(shapes))
    available = length // chunk_len
    chunks = available if num_chunks is None else num_chunks
    if isinstance(chunks, bool) or not isinstance(chunks, int) or not 1 <= chunks <= available:
        raise ValueError(
            f"stream_batches: the stream has T={length} steps, {available} chunks of "
            f"{chunk_len}; num_chunks={num_chunks!r} must be an int in 1..{available}."
        )

    @jax.jit
    def chunk(n):
        j = n % chunks
        start = j * chunk_len

        def cut(leaf):
            return jax.lax.dynamic_slice_in_dim(leaf, start, chunk_len, axis=1)

        reset = jnp.full((batch,), j == 0)
        return StreamChunk(jax.tree_util.tree_map(cut, xs), jax.tree_util.tree_map(cut, ys), reset)

    return lambda n: chunk(jnp.asarray(n, jnp.int32))


def reset_carry(carry: Carry, initial: Carry, reset: Array, batch_axis: int = 0) -> Carry:
    """`initial` in the rows where `reset` holds, `carry` elsewhere, leaf by leaf.

    Args:
      carry, initial: carries of one structure, every leaf with its batch
        axis at `batch_axis` (0 for a cell's carry `[B, H]`, 1 for a stacked
        `lj.recurrent` net's `[layers, B, H]`).
      reset: bool `[B]`.
    """

    def one(c, c0):
        shape = [1] * jnp.ndim(c)
        shape[batch_axis] = jnp.shape(reset)[0]
        return jnp.where(jnp.reshape(reset, shape), c0, c)

    return jax.tree_util.tree_map(one, carry, initial)


def make_stream_step(
    apply_fn: Callable[..., tuple[Any, Carry]],
    loss_fn: Callable[[Any, Any], Array],
    optimizer: optax.GradientTransformation,
    initial_carry: Carry,
    clip_norm: Optional[float] = None,
    *,
    carry_batch_axis: int = 0,
    with_key: bool = False,
    donate: bool = False,
) -> Callable[[TrainState, StreamChunk], tuple[TrainState, dict]]:
    """Build a jitted `(state, chunk) -> (state, metrics)` for `fit` over a stream.

    See `stream_step_fn` for the arguments; `donate` donates the input
    state's buffers to the output.
    """
    step = stream_step_fn(apply_fn, loss_fn, optimizer, initial_carry, clip_norm,
                          carry_batch_axis=carry_batch_axis, with_key=with_key)  # fmt: skip
    return jax.jit(step, donate_argnums=(0,) if donate else ())


def stream_step_fn(
    apply_fn: Callable[..., tuple[Any, Carry]],
    loss_fn: Callable[[Any, Any], Array],
    optimizer: optax.GradientTransformation,
    initial_carry: Carry,
    clip_norm: Optional[float] = None,
    *,
    carry_batch_axis: int = 0,
    with_key: bool = False,
) -> Callable[[TrainState, StreamChunk], tuple[TrainState, dict]]:
    """The step of `make_stream_step`, not yet jitted (for custom `jax.jit` shardings).

    The step resets the rows of `state.carry` that `chunk.reset` marks, runs
    `apply_fn(params, chunk.xs, carry)` with the gradient stopped at the
    carry, takes one optimizer update on `loss_fn(predictions, chunk.ys)`,
    and stores the carry the chunk ended with in the new state. A chunk with
    non-finite values changes neither params, opt_state nor the carry.

    Args:
      apply_fn: `(params, xs, carry) -> (predictions, carry)`, or
        `(params, xs, carry, key)` with `with_key=True`.
      loss_fn: `(predictions, ys) -> scalar`.
      optimizer: any `optax.GradientTransformation`.
      initial_carry: the carry a reset row goes back to (e.g.
        `model.initial_carry(B)`); also what `init_state(..., carry=)` takes.
      clip_norm: global-norm clipping of each chunk's gradient.
      carry_batch_axis: the batch axis of the carry's leaves (see `reset_carry`).
      with_key: give `apply_fn` a key split from `state.rng` (e.g. dropout).

    Returns:
      The step; its metrics are those of `make_train_step`.
    """
    clip = make_clipper(clip_norm)

    def loss(params, xs, ys, carry, key):
        carry = jax.lax.stop_gradient(carry)  # truncation: no gradient into earlier chunks
        args = (params, xs, carry, key) if with_key else (params, xs, carry)
        predictions, carry_out = apply_fn(*args)
        return loss_fn(predictions, ys), carry_out

    def step(state: TrainState, chunk: StreamChunk) -> tuple[TrainState, dict]:
        if state.carry is None:
            raise ValueError(
                "make_stream_step needs the carry in the state: "
                "init_state(params, optimizer, key, carry=initial_carry)."
            )
        xs, ys, reset = chunk
        carry = reset_carry(state.carry, initial_carry, reset, carry_batch_axis)
        rng, key = jax.random.split(state.rng)
        (value, carry_out), grads = jax.value_and_grad(loss, has_aux=True)(
            state.params, xs, ys, carry, key
        )
        new_state, metrics = apply_gradients(optimizer, clip, state, rng, value, grads)
        carry_out = select_tree(metrics["finite"], carry_out, state.carry)
        return new_state._replace(carry=carry_out), metrics

    return step

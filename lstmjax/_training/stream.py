"""Truncated BPTT inside `fit`: one chunk per step, the carry kept in the state.

`fit` calls `step(state, batch_fn(n))` once per update. For a long stream,
update n trains on chunk n: `stream_batches` returns chunk n of the stream
(a pure function of n, so a resumed run reads exactly the chunks it would
have read), and the step made by `tbptt.stream` starts from the carry
the previous chunk ended with, stored in `TrainState.carry`. The gradient is
stopped at the chunk's start (`jax.lax.stop_gradient`): the forward pass
sees the whole history, the backward pass only the chunk's k steps. Since
the carry lives in the state, every checkpoint holds it, and a resumed run
continues the stream exactly where it stopped.

Resets: each chunk comes with `reset`, a bool per row (`[B]`); where it
holds, that row's carry goes back to the initial carry before the chunk (a
new pass over the text, or a new document starting at the chunk boundary).
Resets inside a chunk are the model's: `apply_fn` passes a `[B, k]` array
to `unroll(..., resets=)` (which runs inside the fused kernel for the plain
LSTM and GRU on a CPU, as lengths and masks do).

    step = tbptt.stream(train.make_train_step(apply_fn, loss_fn, optimizer),
                        model.initial_carry(B))
    state = train.init_state(params, optimizer, carry=model.initial_carry(B))
    state, history = train.fit(step, state, stream_batches(xs, ys, k), num_steps)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._checks import check_optional_size, check_size
from lstmjax._training.state import TrainState
from lstmjax._training.step import StepFn, select_tree
from lstmjax._typing import Array, Carry


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
      TypeError: chunk_len or num_chunks is not an int.
      ValueError: chunk_len < 1, the leaves disagree on
        B or T, or T holds fewer than `num_chunks` chunks.
    """
    chunk_len = check_size("chunk_len", chunk_len)
    num_chunks = check_optional_size("num_chunks", num_chunks)
    shapes = {np.shape(leaf)[:2] for leaf in jax.tree_util.tree_leaves((xs, ys))}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(
            f"stream_batches: every leaf of xs and ys must be [batch, time, ...] with the "
            f"same batch and time; got leading shapes {sorted(shapes)}."
        )
    batch, length = next(iter(shapes))
    available = length // chunk_len
    chunks = available if num_chunks is None else num_chunks
    if not 1 <= chunks <= available:
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


def check_stream_carry(
    carry: Carry, initial: Carry, reset: Array, batch_axis: int, where: str
) -> None:
    """Check a stream's carry against its initial carry and the chunk's `reset` (shapes only).

    The carry and the initial carry must have one structure and one shape
    per leaf, each leaf must have the axis `batch_axis`, with one row per
    entry of `reset` (bool `[B]`).
    """
    reset_shape, reset_dtype = jnp.shape(reset), jnp.result_type(reset)
    if len(reset_shape) != 1 or reset_dtype != jnp.bool_:
        raise ValueError(
            f"{where}: reset must be a bool array [batch]; got shape {reset_shape} and dtype "
            f"{reset_dtype}."
        )
    rows = reset_shape[0]
    got = jax.tree_util.tree_structure(carry)
    want = jax.tree_util.tree_structure(initial)
    if got != want:
        raise ValueError(
            f"{where}: the state's carry has structure {got}, but initial_carry has {want}; "
            "build both from one model (init_state(..., carry=model.initial_carry(B)))."
        )
    leaves = jax.tree_util.tree_leaves_with_path(carry)
    for (path, c), c0 in zip(leaves, jax.tree_util.tree_leaves(initial), strict=True):
        leaf = "carry" + jax.tree_util.keystr(path)
        shape = jnp.shape(c)
        if not batch_axis < len(shape):
            raise ValueError(
                f"{where}: carry_batch_axis={batch_axis}, but {leaf} has shape {shape}, "
                f"rank {len(shape)}: the batch axis must be one of its axes (0 for a cell's "
                "carry [B, H], 1 for a stacked lj.recurrent net's [layers, B, H])."
            )
        if jnp.shape(c0) != shape:
            raise ValueError(
                f"{where}: initial_{leaf} has shape {jnp.shape(c0)}, but the state's {leaf} "
                f"has shape {shape}; build both for the same batch size "
                "(model.initial_carry(B) for both init_state and the stream)."
            )
        if shape[batch_axis] != rows:
            hint = ""
            if batch_axis == 0 and len(shape) >= 3 and shape[1] == rows:
                hint = (
                    " A stacked lj.recurrent net's carry is [layers, batch, hidden]: pass "
                    "carry_batch_axis=1."
                )
            raise ValueError(
                f"{where}: the chunk has {rows} rows (reset has shape {reset_shape}), but "
                f"{leaf} of shape {shape} has {shape[batch_axis]} along "
                f"carry_batch_axis={batch_axis}.{hint}"
            )


def reset_carry(carry: Carry, initial: Carry, reset: Array, batch_axis: int = 0) -> Carry:
    """`initial` in the rows where `reset` holds, `carry` elsewhere, leaf by leaf.

    Args:
      carry: a carry, every leaf with its batch axis at `batch_axis` (0 for
        a cell's carry `[B, H]`, 1 for a stacked `lj.recurrent` net's
        `[layers, B, H]`).
      initial: a carry of the same structure and shapes.
      reset: bool `[B]`.
      batch_axis: the batch axis of every leaf (default 0).

    Raises:
      ValueError: the structures or shapes differ, `batch_axis` is not an
        axis of every leaf, or a leaf does not have B rows along it.
    """
    batch_axis = check_size("batch_axis", batch_axis, minimum=0)
    check_stream_carry(carry, initial, reset, batch_axis, "tbptt.reset_carry")
    return _reset(carry, initial, reset, batch_axis)


def _reset(carry: Carry, initial: Carry, reset: Array, batch_axis: int) -> Carry:
    def one(c, c0):
        shape = [1] * jnp.ndim(c)
        shape[batch_axis] = jnp.shape(reset)[0]
        return jnp.where(jnp.reshape(reset, shape), c0, c)

    return jax.tree_util.tree_map(one, carry, initial)


def stream(step: StepFn, initial_carry: Carry, *, carry_batch_axis: int = 0) -> StepFn:
    """Turn a training step into one that trains on a stream, chunk by chunk, inside `fit`.

    The returned step takes a `StreamChunk` (from `stream_batches`): it
    resets the rows of `state.carry` that `chunk.reset` marks to
    `initial_carry`, then runs `step` on `(chunk.xs, chunk.ys)`. The step
    (from `train.make_train_step`) sees a state with a carry, so it calls
    `apply_fn(params, xs, carry) -> (predictions, carry)` with the gradient
    stopped at the carry, and keeps the carry the chunk ended with. A chunk
    with non-finite values changes neither params, opt_state nor the carry.

    Args:
      step: `(state, (xs, ys)) -> (state, metrics)` from `train.make_train_step`
        (or any transform of it, e.g. `distributed.shard`).
      initial_carry: the carry a reset row goes back to (e.g.
        `model.initial_carry(B)`); also what `init_state(..., carry=)` takes.
      carry_batch_axis: the batch axis of the carry's leaves (see `reset_carry`):
        0 (default) for a cell's carry `[B, H]`, 1 for a stacked
        `lj.recurrent` net's `[layers, B, H]`. (A stacked net whose layers
        equal B cannot be told apart by shapes: pass 1 for it.)

    Returns:
      The jitted stream step `(state, chunk) -> (state, metrics)`; its
      metrics are those of `make_train_step`.

    Raises (when the step is traced):
      ValueError: the state holds no carry, or its carry and `initial_carry`
        differ in structure or shape, or `carry_batch_axis` is not an axis
        of every leaf or does not hold the chunk's B rows.
    """
    carry_batch_axis = check_size("carry_batch_axis", carry_batch_axis, minimum=0)

    def streamed(state: TrainState, chunk: StreamChunk) -> tuple[TrainState, dict]:
        if state.carry is None:
            raise ValueError(
                "tbptt.stream needs the carry in the state: "
                "init_state(params, optimizer, carry=initial_carry)."
            )
        if not isinstance(chunk, (tuple, list)) or len(chunk) != 3:
            length = f" of length {len(chunk)}" if isinstance(chunk, (tuple, list)) else ""
            raise TypeError(
                "tbptt.stream: each batch must be a StreamChunk(xs, ys, reset) (from "
                f"tbptt.stream_batches); got {type(chunk).__name__}{length}."
            )
        xs, ys, reset = chunk
        check_stream_carry(state.carry, initial_carry, reset, carry_batch_axis, "tbptt.stream")
        carry = _reset(state.carry, initial_carry, reset, carry_batch_axis)
        new_state, metrics = step(state._replace(carry=carry), (xs, ys))
        kept = select_tree(metrics["finite"], new_state.carry, state.carry)
        return new_state._replace(carry=kept), metrics

    return jax.jit(streamed)

"""Ensembles and sweeps: a population of models trained by one step.

A population is a `TrainState` whose every leaf has a leading member axis
`[M, ...]`, built the JAX way:

    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    def member(key, learning_rate):
        params_key, state_key = jax.random.split(key)
        opt = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
        return train.init_state(init(params_key), opt, key=state_key)
    state = jax.vmap(member)(jax.random.split(key, M), learning_rates)
    step = jax.vmap(train.make_train_step(apply_fn, loss_fn, optimizer), in_axes=(0, None))
    state, history = train.fit(step, state, batch_fn, num_steps)

`optax.inject_hyperparams` keeps each member's learning rate in its own
optimizer state, so one step serves every member. `in_axes=(0, None)` gives
every member the same batch (plain `jax.vmap(step)` maps the batch too:
`batch_fn` then returns `[M, B, ...]`, one batch per member). `fit` logs
each metric as a list with one entry per member and names the members
that diverge.

`ensemble(step)` is the same population step laid out as a loop over the
members (`jax.lax.map`) instead of batched matmuls; which is faster depends
on the backend (see its docstring for a measurement).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstmjax._checks import check_callable, check_index
from lstmjax._training.state import TrainState
from lstmjax._training.step import StepFn
from lstmjax._typing import Batch


def ensemble(step: StepFn) -> StepFn:
    """`jax.vmap(step, in_axes=(0, None))` laid out as a loop over the members.

    Each member's update inside the one compiled step is exactly that of a
    single run (`jax.lax.map` over the members), where `jax.vmap` turns each
    matmul into a batched one. The results agree to rounding; only the speed
    differs. Measured on this project's shared 2-core CPU (jax 0.10.2; 8
    LSTMs of hidden size 32, batch 32, 20 time steps, Adam; 20 updates per
    timing, medians of 7 interleaved repeats): `ensemble(step)` 0.146 s,
    `jax.jit(jax.vmap(step, in_axes=(0, None)))` 0.225 s, a ratio of 0.65
    (XLA:CPU's batched matmuls are slower than separate ones). Prefer
    `ensemble` on CPU; prefer `jax.vmap` on accelerators, where batched
    matmuls are usually the fast path (not measured here), when each member
    reads its own batch, and wherever you compose further JAX transforms.

    Args:
      step: a single model's `(state, batch) -> (state, metrics)`, e.g.
        from `train.make_train_step`.

    Returns:
      The jitted population step `(state, batch) -> (state, metrics)`: every
      leaf of `state` has a leading member axis `[M, ...]`, every member
      reads the whole `batch`, and every metric gains a leading axis `[M]`.
    """

    check_callable("ensemble: step", step)

    def population(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        return jax.lax.map(lambda member: step(member, batch), state)

    return jax.jit(population)


def population_size(state: TrainState, where: str) -> int:
    """M, the members of a population state (every leaf `[M, ...]`, `step` `[M]`)."""
    if not isinstance(state, TrainState):
        raise TypeError(
            f"{where}: state must be a train.TrainState (jax.vmap of train.init_state for a "
            f"population); got {type(state).__name__}."
        )
    step_shape = jnp.shape(state.step)
    if len(step_shape) != 1:
        raise ValueError(
            f"{where}: state is not a population: its step has shape {step_shape}, where a "
            "population (jax.vmap of train.init_state) has one step per member, [M]."
        )
    size = step_shape[0]
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        shape = jnp.shape(leaf)
        if not shape or shape[0] != size:
            raise ValueError(
                f"{where}: state{jax.tree_util.keystr(path)} has shape {shape}, but every "
                f"leaf of a population of {size} members has a leading axis [{size}, ...]."
            )
    return size


def member_state(state: TrainState, m: int) -> TrainState:
    """Member `m` of a population as a single run's `TrainState` (for evaluation, export).

    Raises:
      TypeError: `state` is not a `TrainState`, or `m` is not an int.
      ValueError: `state` is not a population (leaves `[M, ...]`), or `m` is
        not in `[0, M)` (JAX indexing would clamp it to the last member).
    """
    size = population_size(state, "member_state")
    m = check_index("m", m, size, "members")
    return jax.tree_util.tree_map(lambda x: x[m], state)

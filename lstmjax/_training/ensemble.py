"""Ensembles and sweeps: a population of models trained by one step.

Member m has its own parameters, optimizer state and PRNG key (each leaf of
the `TrainState` gains a leading member axis `[M, ...]`), and optionally its
own hyperparameters (e.g. a learning rate per member, passed as an array).
All members read the same batch and share one step counter, so `fit` drives
a population like a single model: its metrics are lists with one entry per
member, and a checkpoint holds the whole population.

The members' updates are independent, so member m follows exactly the run
that `train.make_train_step` would give on its own. How the M updates are
laid out inside the one compiled step is a choice of speed only:

  "vmap"  `jax.vmap` over the members: every matmul becomes a batched matmul.
  "map"   `jax.lax.map`: a loop over the members inside the step, each
          member's computation exactly that of a single run.

Measured on this project's 2-core CPU (`experiments/_bench_training.py
ensemble`: 8 LSTMs, H=64, B=64, T=50), against 8 sequential runs, in four
noisy runs on a shared machine: "map" 2.1x, 0.89x, 1.8x and 1.2x their
speed, "vmap" 0.38x-0.51x. (A third layout, the members' programs
side by side in one step, unrolled at trace time, ran at about 0.6x and was
dropped.) XLA:CPU's batched matmuls are slower than separate ones, so "map"
is the default; "vmap" stays for accelerators, where batched matmuls are
usually the fast path (not measured here: no accelerator was available),
and for code that vmaps the step itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstmjax._training.step import ApplyFn, Batch, LossFn, TrainState, init_state, train_step_fn

LAYOUTS = ("map", "vmap")
Factory = Callable[..., optax.GradientTransformation]  # (**hyperparams) -> optimizer
OptimizerOrFactory = Union[optax.GradientTransformation, Factory]


def _member_keys(seeds: Sequence[int]) -> jax.Array:
    if isinstance(seeds, (int, np.integer)) or len(seeds) < 1:
        raise ValueError(f"seeds must be a non-empty sequence of ints; got {seeds!r}.")
    return jnp.stack([jax.random.key(int(s)) for s in seeds])


def _hyper(hyperparams: Optional[dict], members: int) -> dict:
    """Check the per-member hyperparameters: each a 1-d array of one value per member."""
    out = {}
    for name, value in (hyperparams or {}).items():
        value = jnp.asarray(value)
        if value.shape != (members,):
            raise ValueError(
                f"hyperparameter {name!r} must hold one value per member, shape ({members},); "
                f"got shape {value.shape}."
            )
        out[name] = value
    return out


def _optimizer_for(optimizer: OptimizerOrFactory, hyper: dict) -> optax.GradientTransformation:
    if isinstance(optimizer, optax.GradientTransformation):
        if hyper:
            raise ValueError(
                "per-member hyperparameters need an optimizer factory, e.g. "
                "`lambda learning_rate: optax.adam(learning_rate)`, not an optimizer."
            )
        return optimizer
    return optimizer(**hyper)


def member_seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """`(params key, state key)` of the member with this seed; an independent run uses the same.

    The member with seed s is initialised as `init_fn(params_key)` with its
    training state from `init_state(params, optimizer, state_key)`, where
    `params_key, state_key = jax.random.split(jax.random.key(s))`.
    """
    params_key, state_key = jax.random.split(jax.random.key(seed))
    return params_key, state_key


def init_ensemble(
    init_fn: Callable[[jax.Array], Any],
    optimizer: OptimizerOrFactory,
    seeds: Sequence[int],
    hyperparams: Optional[dict[str, Any]] = None,
) -> TrainState:
    """The `TrainState` of a population, one member per seed, at step 0.

    Args:
      init_fn: `key -> params` of one model.
      optimizer: an `optax.GradientTransformation`, or with `hyperparams` a
        factory `(**hyperparams) -> GradientTransformation` called with each
        member's values (e.g. `lambda learning_rate: optax.adam(learning_rate)`).
      seeds: M ints; member m is the model a single run with seed
        `seeds[m]` would start from (`member_seed_keys`).
      hyperparams: name -> array `[M]`, the arguments of the factory.

    Returns:
      A `TrainState` whose params, opt_state and rng have a leading member
      axis `[M, ...]`, and whose step is one shared int32 scalar.
    """
    keys = _member_keys(seeds)
    hyper = _hyper(hyperparams, len(keys))

    def one(key, hp):
        params_key, state_key = jax.random.split(key)
        return init_state(init_fn(params_key), _optimizer_for(optimizer, hp), state_key)

    state = jax.vmap(one)(keys, hyper)
    return state._replace(step=jnp.zeros((), jnp.int32))


def make_ensemble_step(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: OptimizerOrFactory,
    hyperparams: Optional[dict[str, Any]] = None,
    clip_norm: Optional[float] = None,
    *,
    with_key: bool = False,
    layout: str = "map",
    donate: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """`make_train_step` for a population from `init_ensemble`: one update of every member.

    Args:
      apply_fn, loss_fn, clip_norm, with_key, donate: as in `make_train_step`.
      optimizer: as in `init_ensemble` (the same one).
      hyperparams: as in `init_ensemble` (the same values).
      layout: how the members' updates are arranged in the compiled step:
        "map" (default, fastest on CPU) or "vmap" (module docstring);
        either way each member follows its own single run.

    Returns:
      `step(state, batch) -> (state, metrics)`; every member reads the whole
      `batch`; each metric of `make_train_step` gains a leading member axis
      (loss `[M]`, finite `[M]`, ...).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}.")
    hyper_values = hyperparams or {}

    def member(state: TrainState, batch: Batch, hp: dict) -> tuple[TrainState, dict]:
        step = train_step_fn(apply_fn, loss_fn, _optimizer_for(optimizer, hp), clip_norm,
                             with_key=with_key)  # fmt: skip
        new, metrics = step(state, batch)
        return new._replace(step=None), metrics  # the shared counter is advanced once, outside

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        members = jax.tree_util.tree_leaves(state.rng)[0].shape[0]
        hyper = _hyper(hyper_values, members)
        shared = state.step
        population = state._replace(step=None)
        if layout == "vmap":
            new, metrics = jax.vmap(lambda s, hp: member(s._replace(step=shared), batch, hp))(
                population, hyper
            )
        else:
            new, metrics = jax.lax.map(
                lambda args: member(args[0]._replace(step=shared), batch, args[1]),
                (population, hyper),
            )
        return new._replace(step=shared + 1), metrics

    return jax.jit(step, donate_argnums=(0,) if donate else ())


def _take(tree: Any, m: int) -> Any:
    return jax.tree_util.tree_map(lambda x: x[m], tree)


def member_state(state: TrainState, m: int) -> TrainState:
    """Member m of a population as a single run's `TrainState` (for evaluation, export)."""
    return _take(state._replace(step=None), m)._replace(step=state.step)

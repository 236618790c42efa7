"""The training state: everything a run needs to continue exactly where it stopped.

This file imports nothing from lstmjax but the type aliases and the ground-floor
checks, so that the checkpointer (`lstmjax._checkpointing`) can store a
`TrainState` without importing the training loop that uses it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstmjax._array_checks import check_key
from lstmjax._typing import Array


class TrainState(NamedTuple):
    """Everything a training run needs to continue exactly where it stopped.

    Attributes:
      params: the model parameters (any pytree).
      opt_state: the Optax optimizer state for `params`.
      step: int32 scalar, the number of updates done so far; it is also the
        index of the next batch (`fit` asks `batch_fn(step)` for it). In a
        population (`jax.vmap(init_state)`), one per member `[M]`, all equal.
      rng: a PRNG key split once per step (the split-off key goes to
        `apply_fn` when the step was built with `with_key=True`), or None
        when the run needs no randomness.
      carry: the recurrent carry handed from one update to the next in
        truncated BPTT over a stream (`lstmjax.tbptt.stream`), so that
        checkpoints hold it; None (no leaves) for every other run.
    """

    params: Any
    opt_state: optax.OptState
    step: Array
    rng: Optional[Array] = None
    carry: Any = None


def init_state(
    params: Any,
    optimizer: optax.GradientTransformation,
    *,
    key: Optional[Array] = None,
    carry: Any = None,
) -> TrainState:
    """A fresh `TrainState` at step 0.

    Args:
      params: the model parameters.
      optimizer: any `optax.GradientTransformation`, the same one given to
        `make_train_step` (clipping included, e.g. `optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(1e-3))`).
      key: a PRNG key (`jax.random.key` or `jax.random.PRNGKey`), needed
        only when `apply_fn` takes one (`make_train_step(..., with_key=True)`);
        None: the state holds no key.
      carry: the carry the first chunk of a stream starts from, for
        `tbptt.stream` (e.g. `model.initial_carry(B)`); else None.

    Returns:
      The state; `jax.vmap` it over keys (or parameters) for a population,
      e.g. `jax.vmap(lambda k: init_state(init(k), opt, key=k))(keys)`.

    Raises:
      TypeError: `optimizer` is not an optax transformation, or `key` is
        not a JAX key.
    """
    init, update = getattr(optimizer, "init", None), getattr(optimizer, "update", None)
    if not (callable(init) and callable(update)):
        raise TypeError(
            "init_state: optimizer must be an optax.GradientTransformation (e.g. "
            f"optax.adam(1e-3)); got {type(optimizer).__name__}."
        )
    if key is not None:
        key = check_key(key, "init_state")
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        step=jnp.zeros((), jnp.int32),
        rng=key,
        carry=carry,
    )


def step_number(state: TrainState) -> int:
    """`state.step` as a Python int; a population's per-member steps must all agree.

    Raises:
      ValueError: the members of a population stand at different steps.
    """
    steps = np.asarray(jax.device_get(state.step))
    if steps.ndim == 0:
        return int(steps)
    values = np.unique(steps)
    if values.size != 1:
        raise ValueError(
            f"the state's step has shape {steps.shape} with different values "
            f"{values.tolist()[:5]}; every member of a population must stand at the same step."
        )
    return int(values[0])

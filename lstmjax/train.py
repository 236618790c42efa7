"""Training with Optax: one pure jitted step, transforms of it, and a `fit` loop.

    from lstmjax import train
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    state = train.init_state(params, optimizer)
    step = train.make_train_step(apply_fn, loss_fn, optimizer)
    state, metrics = step(state, (xs, ys))      # metrics["loss"], metrics["grad_norm"]
    state, history = train.fit(step, state, batch_fn, num_steps=1000,
                               checkpointing=train.Checkpointing("ckpt", every=100))

`apply_fn(params, xs) -> predictions` and `loss_fn(predictions, ys) -> scalar`.
Run `fit` again with the same checkpoint directory to resume from the latest
checkpoint; the result is bit-identical to an uninterrupted run.

The step composes: `jax.vmap(step, in_axes=(0, None))` (or `train.ensemble(step)`)
trains a population whose state is `jax.vmap` of `init_state`;
`lstmjax.distributed.shard(step, mesh)` spreads the batch over devices and
processes; `lstmjax.tbptt.stream(step, carry0)` and `tbptt.chunked(step, k)`
train on long streams with truncated BPTT.
"""

from lstmjax._training.ensemble import ensemble as ensemble
from lstmjax._training.ensemble import member_state as member_state
from lstmjax._training.loop import History as History
from lstmjax._training.loop import TrainingDiverged as TrainingDiverged
from lstmjax._training.loop import fit as fit
from lstmjax._training.options import Checkpointing as Checkpointing
from lstmjax._training.options import Logging as Logging
from lstmjax._training.state import TrainState as TrainState
from lstmjax._training.state import init_state as init_state
from lstmjax._training.step import group_norms as group_norms
from lstmjax._training.step import make_eval_step as make_eval_step
from lstmjax._training.step import make_train_step as make_train_step


def keyed_batches(key, make_batch):
    """Turn `make_batch(key) -> batch` into a `fit` batch source `step -> batch`.

    The key of step `n` is `jax.random.fold_in(key, n)`: the batches depend on
    the step number alone, which is what makes resuming exact. Example:
    `keyed_batches(key, lambda k: tasks.adding_problem(k, 32, 50))`.
    `make_batch` is jitted (one compilation instead of one per operation).

    Args:
      key: the data key (required: first positional, the project's rule).
      make_batch: `key -> batch`.

    Returns:
      `step -> batch`.

    Raises:
      TypeError: `key` is not a JAX key, or `make_batch` is not callable.
    """
    import jax

    from lstmjax._array_checks import check_key
    from lstmjax._checks import check_callable

    key = check_key(key, "keyed_batches")
    check_callable("keyed_batches: make_batch", make_batch)
    make = jax.jit(lambda step: make_batch(jax.random.fold_in(key, step)))
    return lambda step: make(step)


__all__ = [
    "Checkpointing",
    "History",
    "Logging",
    "TrainState",
    "TrainingDiverged",
    "ensemble",
    "fit",
    "group_norms",
    "init_state",
    "keyed_batches",
    "make_eval_step",
    "make_train_step",
    "member_state",
]

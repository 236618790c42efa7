"""Training with Optax: a pure jitted step, an evaluation step, and a `fit` loop.

    from lstmjax import train
    state = train.init_state(params, optax.adam(1e-3), key)
    step = train.make_train_step(apply_fn, loss_fn, optax.adam(1e-3), clip_norm=1.0)
    state, metrics = step(state, (xs, ys))      # metrics["loss"], metrics["grad_norm"]
    state, history = train.fit(step, state, batch_fn, num_steps=1000,
                               checkpoint_dir="ckpt", checkpoint_every=100)

`apply_fn(params, xs) -> predictions` and `loss_fn(predictions, ys) -> scalar`.
Run `fit` again with the same `checkpoint_dir` to resume from the latest
checkpoint; the result is bit-identical to an uninterrupted run.

A population (seeds, per-member learning rates) trains as one model:
`state = train.init_ensemble(init_fn, lambda learning_rate: optax.adam(learning_rate),
seeds=range(8), hyperparams={"learning_rate": lrs})` and
`train.make_ensemble_step(apply_fn, loss_fn, <the same factory>, {"learning_rate": lrs})`;
`fit` drives it unchanged, with one metric per member.
"""

from lstmjax._training.ensemble import init_ensemble as init_ensemble
from lstmjax._training.ensemble import make_ensemble_step as make_ensemble_step
from lstmjax._training.ensemble import member_seed_keys as member_seed_keys
from lstmjax._training.ensemble import member_state as member_state
from lstmjax._training.loop import History as History
from lstmjax._training.loop import TrainingDiverged as TrainingDiverged
from lstmjax._training.loop import fit as fit
from lstmjax._training.step import TrainState as TrainState
from lstmjax._training.step import group_norms as group_norms
from lstmjax._training.step import init_state as init_state
from lstmjax._training.step import make_eval_step as make_eval_step
from lstmjax._training.step import make_train_step as make_train_step
from lstmjax._training.step import train_step_fn as train_step_fn


def keyed_batches(key, make_batch):
    """Turn `make_batch(key) -> batch` into a `fit` batch source `step -> batch`.

    The key of step `n` is `jax.random.fold_in(key, n)`: the batches depend on
    the step number alone, which is what makes resuming exact. Example:
    `keyed_batches(key, lambda k: tasks.adding_problem(k, 32, 50))`.
    `make_batch` is jitted (one compilation instead of one per operation).
    """
    import jax

    make = jax.jit(lambda step: make_batch(jax.random.fold_in(key, step)))
    return lambda step: make(step)


__all__ = [
    "History",
    "TrainState",
    "TrainingDiverged",
    "fit",
    "group_norms",
    "init_ensemble",
    "init_state",
    "keyed_batches",
    "make_ensemble_step",
    "make_eval_step",
    "make_train_step",
    "member_seed_keys",
    "member_state",
    "train_step_fn",
]

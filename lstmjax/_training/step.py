"""The one training step: gradients, an Optax update, a guard against non-finite values.

The step is one jitted function `(state, batch) -> (state, metrics)`; it
prints nothing and owns no Python state, so it composes with JAX's own
transforms and with ours: `jax.vmap(step, in_axes=(0, None))` trains a
population, `lstmjax.distributed.shard(step, mesh)` splits the batch over
devices, `lstmjax.tbptt.stream(step, ...)` and `tbptt.chunked(step, k)`
train on a long stream. Clipping is an Optax transformation in the
optimizer (`optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from lstmjax._arrays import group_norms as _group_norms
from lstmjax._checks import check_bool
from lstmjax._training.state import TrainState
from lstmjax._typing import Array, Batch

ApplyFn = Callable[..., Any]  # (params, xs[, carry][, key]) -> predictions[, carry]
LossFn = Callable[[Any, Any], Array]  # (predictions, ys) -> scalar
StepFn = Callable[[TrainState, Batch], tuple[TrainState, dict]]


def group_norms(tree: Any) -> dict[str, Array]:
    """Global norm of each top-level part of a pytree, keyed by its name.

    NamedTuple fields and dict keys give the names; tuple and list entries
    are named by position ("0", "1", ...); a bare array is one group,
    "params". Parts with no arrays (e.g. `backward=None`) are left out.
    The grouping is `lstmjax.diagnostics.param_group_grad_norms` at depth 1.
    """
    return _group_norms(tree, depth=1, bare="params")


def all_finite(tree: Any) -> Array:
    """True when every floating-point entry of `tree` is finite (a bool scalar)."""
    checks = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def split_batch(batch: Batch) -> tuple[Any, Any]:
    """Unpack `(xs, ys)` with a message that says what was expected."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(
            f"a batch must be a pair (xs, ys); got {type(batch).__name__}"
            + (f" of length {len(batch)}." if isinstance(batch, (tuple, list)) else ".")
        )
    return batch[0], batch[1]


def select_tree(pred: Array, new: Any, old: Any) -> Any:
    """`new` where the scalar `pred` holds, else `old`, leaf by leaf."""
    return jax.tree_util.tree_map(lambda n, o: jnp.where(pred, n, o), new, old)


def _scalar_loss(value: Array) -> Array:
    if jnp.shape(value) != ():
        raise ValueError(
            f"loss_fn must return a scalar; got shape {jnp.shape(value)}. "
            "Average (or sum) over the batch and time inside loss_fn."
        )
    return value


def _split_key(state: TrainState, with_key: bool) -> tuple[Optional[Array], Optional[Array]]:
    """`(next rng, key for apply_fn)`: the state's key is split once per step when it has one."""
    if state.rng is None:
        if with_key:
            raise ValueError(
                "make_train_step(..., with_key=True) needs a key in the state: "
                "init_state(params, optimizer, key=jax.random.key(0)); the state has rng=None."
            )
        return None, None
    rng, key = jax.random.split(state.rng)
    return rng, key


def apply_gradients(
    optimizer: optax.GradientTransformation,
    state: TrainState,
    rng: Optional[Array],
    loss: Array,
    grads: Any,
) -> tuple[TrainState, dict]:
    """One guarded optimizer update and its metrics.

    A step whose loss, gradient or resulting parameters are not all finite
    changes nothing but `step` and `rng`, so the state in hand always holds
    the last good parameters; `metrics["finite"]` tells the caller.
    """
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(params)
    new_state = TrainState(
        params=select_tree(finite, params, state.params),
        opt_state=select_tree(finite, opt_state, state.opt_state),
        step=state.step + 1,
        rng=rng,
        carry=state.carry,
    )
    metrics = {
        "loss": loss,
        "grad_norm": grad_norm,
        "grad_norms": group_norms(grads),
        "update_norm": optax.tree.norm(updates),
        "finite": finite,
    }
    return new_state, metrics


def make_train_step(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    with_key: bool = False,
) -> StepFn:
    """Build the jitted, pure training step `(state, (xs, ys)) -> (state, metrics)`.

    The one step builder of lstmjax; everything else is a transform of its
    result: `jax.vmap(step, in_axes=(0, None))` for a population,
    `distributed.shard(step, mesh)` for devices and processes,
    `tbptt.stream(step, initial_carry)` and `tbptt.chunked(step, chunk_len)`
    for truncated BPTT, `jax.jit(step, donate_argnums=0)` to donate the
    state's buffers.

    Args:
      apply_fn: `(params, xs) -> predictions`. When the state holds a carry
        (`init_state(..., carry=c0)`, for truncated BPTT) it is called as
        `(params, xs, carry) -> (predictions, carry)`, with the gradient
        stopped at the incoming carry, and the carry it returns is kept in
        the new state. With `with_key=True`, a key is the last argument.
      loss_fn: `(predictions, ys) -> scalar`.
      optimizer: any `optax.GradientTransformation`; gradient clipping goes
        here, e.g. `optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))`.
      with_key: pass a fresh key, split from `state.rng` each step, to
        `apply_fn` as its last argument (e.g. for dropout:
        `lambda p, xs, key: net.apply(p, xs, key=key)`). This keyword is
        the only way a step decides whether `apply_fn` takes a key; a
        `lj.recurrent` net with dropout applied without one is an error.

    Returns:
      `step(state, batch) -> (state, metrics)` with metrics
        loss: the loss at the parameters before the update;
        grad_norm: global L2 norm of the gradient, before any clipping;
        grad_norms: dict of the gradient norm of each top-level parameter group;
        update_norm: global norm of the applied update;
        finite: False when the loss, gradient or new parameters were not all
          finite; the step then leaves params, opt_state and carry unchanged
          (only `step` and `rng` advance) and `fit` stops with `TrainingDiverged`.
    """
    with_key = check_bool("with_key", with_key)

    def objective(params, xs, ys, carry, key):
        args = (params, xs) if carry is None else (params, xs, jax.lax.stop_gradient(carry))
        out = apply_fn(*args, key) if with_key else apply_fn(*args)
        predictions, carry_out = (out, None) if carry is None else out
        return _scalar_loss(loss_fn(predictions, ys)), carry_out

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        xs, ys = split_batch(batch)
        rng, key = _split_key(state, with_key)
        (loss, carry), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, xs, ys, state.carry, key
        )
        new_state, metrics = apply_gradients(optimizer, state, rng, loss, grads)
        if state.carry is not None:
            new_state = new_state._replace(carry=select_tree(metrics["finite"], carry, state.carry))
        return new_state, metrics

    return jax.jit(step)


def make_eval_step(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    *,
    with_key: bool = False,
    metric_fns: Optional[dict[str, LossFn]] = None,
) -> Callable[[Any, Batch], dict]:
    """Build a jitted `eval_step(params, (xs, ys)) -> {"loss": ..., **metrics}`.

    Args:
      apply_fn: `(params, xs) -> predictions`, as for `make_train_step`.
      loss_fn: `(predictions, ys) -> scalar`.
      with_key: `apply_fn` takes a key as its last argument; it gets
        `None` here, and must then evaluate without dropout. A
        `lj.recurrent` net with dropout refuses a missing key unless told
        `deterministic=True`: pass `lambda p, xs, key: net.apply(p, xs,
        key=key, deterministic=key is None)`.
      metric_fns: extra names mapped to `(predictions, ys) -> scalar`.

    Returns:
      `eval_step(params, batch) -> dict of scalars`.
    """
    with_key = check_bool("with_key", with_key)
    extra = dict(metric_fns or {})

    def evaluate(params, batch):
        xs, ys = split_batch(batch)
        predictions = apply_fn(params, xs, None) if with_key else apply_fn(params, xs)
        out = {"loss": loss_fn(predictions, ys)}
        out.update({name: fn(predictions, ys) for name, fn in extra.items()})
        return out

    return jax.jit(evaluate)

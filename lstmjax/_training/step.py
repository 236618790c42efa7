"""The pure training step: state, gradients, clipping, an Optax update.

The step is one jitted function `(state, batch) -> (state, metrics)`; it
prints nothing and owns no Python state, so the same function runs under
`jit`, with sharded inputs (`lstmjax.parallel`) or inside a scan over
chunks (`lstmjax.tbptt`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lstmjax._arrays import group_norms as _group_norms

Array = jax.Array
Batch = Any  # a pair (xs, ys) of arrays or pytrees
ApplyFn = Callable[..., Any]  # (params, xs) -> predictions, or (params, xs, key)
LossFn = Callable[[Any, Any], Array]  # (predictions, ys) -> scalar


class TrainState(NamedTuple):
    """Everything a training run needs to continue exactly where it stopped.

    Attributes:
      params: the model parameters (any pytree).
      opt_state: the Optax optimizer state for `params`.
      step: int32 scalar, the number of updates done so far; it is also the
        index of the next batch (`fit` asks `batch_fn(step)` for it).
      rng: a PRNG key, split once per step; the split-off key goes to
        `apply_fn` when the step was built with `with_key=True`.
      carry: the recurrent carry handed from one update to the next in
        truncated BPTT over a stream (`lstmjax.tbptt.make_stream_step`), so
        that checkpoints hold it; None (no leaves) for every other step.
    """

    params: Any
    opt_state: optax.OptState
    step: Array
    rng: Array
    carry: Any = None


def init_state(
    params: Any, optimizer: optax.GradientTransformation, key: Array, carry: Any = None
) -> TrainState:
    """A fresh `TrainState` at step 0.

    Args:
      params: the model parameters.
      optimizer: any `optax.GradientTransformation`, the same one given to
        `make_train_step` (its `clip_norm` adds no optimizer state).
      key: a PRNG key (`jax.random.key` or `jax.random.PRNGKey`).
      carry: the carry the first chunk of a stream starts from, for
        `tbptt.make_stream_step` (e.g. `model.initial_carry(B)`); else None.
    """
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        step=jnp.zeros((), jnp.int32),
        rng=key,
        carry=carry,
    )


def make_clipper(clip_norm: Optional[float]) -> Callable[[Any], Any]:
    """`grads -> grads` through `optax.clip_by_global_norm(clip_norm)` (Pascanu et al. 2013).

    The clipping transformation holds no state (`EmptyState`), so it runs
    here with a fresh one, in front of the optimizer, and the optimizer
    state stays exactly `optimizer.init(params)`: the same `TrainState`
    serves runs with and without clipping.
    """
    if clip_norm is None:
        return lambda grads: grads
    if isinstance(clip_norm, bool) or not clip_norm > 0:
        raise ValueError(f"clip_norm must be a positive number or None; got {clip_norm!r}.")
    clip = optax.clip_by_global_norm(clip_norm)

    def clipped(grads):
        updates, _ = clip.update(grads, clip.init(grads))
        return updates

    return clipped


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


def make_loss(apply_fn: ApplyFn, loss_fn: LossFn, with_key: bool) -> Callable[..., Array]:
    """`(params, xs, ys, key) -> scalar loss`; the key reaches `apply_fn` only if asked."""

    def loss(params, xs, ys, key):
        predictions = apply_fn(params, xs, key) if with_key else apply_fn(params, xs)
        value = loss_fn(predictions, ys)
        if jnp.shape(value) != ():
            raise ValueError(
                f"loss_fn must return a scalar; got shape {jnp.shape(value)}. "
                "Average (or sum) over the batch and time inside loss_fn."
            )
        return value

    return loss


def select_tree(pred: Array, new: Any, old: Any) -> Any:
    """`new` where the scalar `pred` holds, else `old`, leaf by leaf."""
    return jax.tree_util.tree_map(lambda n, o: jnp.where(pred, n, o), new, old)


def apply_gradients(
    optimizer: optax.GradientTransformation,
    clip: Callable[[Any], Any],
    state: TrainState,
    rng: Array,
    loss: Array,
    grads: Any,
) -> tuple[TrainState, dict]:
    """One guarded optimizer update and its metrics (shared with `lstmjax.tbptt`).

    A step whose loss, gradient or resulting parameters are not all finite
    changes nothing but `step` and `rng`, so the state in hand always holds
    the last good parameters; `metrics["finite"]` tells the caller.
    """
    updates, opt_state = optimizer.update(clip(grads), state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(params)
    new_state = TrainState(
        params=select_tree(finite, params, state.params),
        opt_state=select_tree(finite, opt_state, state.opt_state),
        step=state.step + 1,
        rng=rng,
        carry=state.carry,  # a stream step replaces it with the chunk's final carry
    )
    metrics = {
        "loss": loss,
        "grad_norm": grad_norm,
        "grad_norms": group_norms(grads),
        "update_norm": optax.tree.norm(updates),
        "finite": finite,
    }
    return new_state, metrics


def train_step_fn(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    clip_norm: Optional[float] = None,
    *,
    with_key: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """The step of `make_train_step`, not yet jitted (for custom `jax.jit` shardings)."""
    clip = make_clipper(clip_norm)
    loss_of = make_loss(apply_fn, loss_fn, with_key)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        xs, ys = split_batch(batch)
        rng, key = jax.random.split(state.rng)
        loss, grads = jax.value_and_grad(loss_of)(state.params, xs, ys, key)
        return apply_gradients(optimizer, clip, state, rng, loss, grads)

    return step


def make_train_step(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    clip_norm: Optional[float] = None,
    *,
    with_key: bool = False,
    donate: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """Build a jitted, pure training step `(state, (xs, ys)) -> (state, metrics)`.

    Args:
      apply_fn: `(params, xs) -> predictions`, or `(params, xs, key)` with
        `with_key=True` (a fresh key each step, e.g. for dropout).
      loss_fn: `(predictions, ys) -> scalar`.
      optimizer: any `optax.GradientTransformation`.
      clip_norm: if set, `optax.clip_by_global_norm(clip_norm)` runs before
        `optimizer` (it holds no state, so `init_state(params, optimizer, key)`
        fits either way).
      with_key: pass a key split from `state.rng` to `apply_fn`.
      donate: donate the input state's buffers to the output (saves memory;
        the state passed in must not be used afterwards).

    Returns:
      `step(state, batch) -> (state, metrics)` with metrics
        loss: the loss at the parameters before the update;
        grad_norm: global L2 norm of the gradient, before clipping;
        grad_norms: dict of the gradient norm of each top-level parameter group;
        update_norm: global norm of the applied update;
        finite: False when the loss, gradient or new parameters were not all
          finite; the step then leaves params and opt_state unchanged (only
          `step` and `rng` advance) and `fit` stops with `TrainingDiverged`.
    """
    step = train_step_fn(apply_fn, loss_fn, optimizer, clip_norm, with_key=with_key)
    return jax.jit(step, donate_argnums=(0,) if donate else ())


def make_eval_step(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    *,
    with_key: bool = False,
    metric_fns: Optional[dict[str, LossFn]] = None,
) -> Callable[[Any, Batch], dict]:
    """Build a jitted `eval_step(params, (xs, ys)) -> {"loss": ..., **metrics}`.

    With `with_key=True`, `apply_fn` gets `key=None` (no dropout at evaluation).
    `metric_fns` maps extra names to `(predictions, ys) -> scalar`.
    """
    extra = dict(metric_fns or {})

    def evaluate(params, batch):
        xs, ys = split_batch(batch)
        predictions = apply_fn(params, xs, None) if with_key else apply_fn(params, xs)
        out = {"loss": loss_fn(predictions, ys)}
        out.update({name: fn(predictions, ys) for name, fn in extra.items()})
        return out

    return jax.jit(evaluate)

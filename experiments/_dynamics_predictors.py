"""One-step predictors of a dynamical system: a cell and a linear readout.

The model reads one state per step and predicts the increment to the next
state (both standardised with training-set statistics); it is trained with
teacher forcing, then evaluated one step ahead and in closed loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _dynamics import growth_rate, system_data

import lstmjax as lj
from lstmjax import losses, tasks, train

CELLS: dict[str, Callable[[int], lj.Cell]] = {"rnn": lj.rnn, "lstm": lj.lstm}


class Model(NamedTuple):
    cell: Any  # the cell's parameters
    readout: lj.DenseParams  # [H, D]


class Scaling(NamedTuple):
    """Standardisation of states and increments (training-set statistics), each `[D]`."""

    state_mean: jax.Array
    state_std: jax.Array
    step_mean: jax.Array
    step_std: jax.Array


def scaling_of(trajectories) -> Scaling:
    """Per-coordinate mean and std of the states and of the increments, `[B, T, D]` in."""
    steps = trajectories[:, 1:] - trajectories[:, :-1]
    axes = (0, 1)
    return Scaling(
        jnp.mean(trajectories, axes),
        jnp.std(trajectories, axes),
        jnp.mean(steps, axes),
        jnp.std(steps, axes),
    )


def along_last(v, like):
    """Reshape `v: [D]` to `[1, ..., 1, D]` for `like` (no implicit rank promotion)."""
    return jnp.reshape(v, (1,) * (jnp.ndim(like) - 1) + jnp.shape(v))


def standardise(states, scale: Scaling):
    return (states - along_last(scale.state_mean, states)) / along_last(scale.state_std, states)


def predictor(cell: lj.Cell, readout: lj.Layer, scale: Scaling):
    """`(apply_fn, step_fn)` of the one-step predictor.

    apply_fn: `(params, states [B, T, D], carry) -> (next states [B, T, D], carry)`,
    reading true states (teacher forcing). step_fn: `(params, carry, state [B, D])
    -> (carry, next state [B, D])`, one closed-loop step.
    """

    def decode(p: Model, states, hs):
        inc = readout.apply(p.readout, hs)
        step_std, step_mean = along_last(scale.step_std, inc), along_last(scale.step_mean, inc)
        return states + inc * step_std + step_mean

    def apply_fn(p: Model, states, carry=None):
        hs, carry = lj.unroll(cell, p.cell, standardise(states, scale), carry)
        return decode(p, states, hs), carry

    def step_fn(p: Model, carry, state):
        carry, h = cell.step(p.cell, carry, standardise(state, scale))
        return carry, decode(p, state, h)

    return apply_fn, step_fn


def train_predictor(key, system: str, label: str, config: dict, scale: Scaling, bar):
    """Train `label` to predict the next state of `system`; returns params and curve."""
    cell, readout = CELLS[label](config["hidden"]), lj.dense(scale.state_mean.shape[0])
    apply_fn, step_fn = predictor(cell, readout, scale)
    k_cell, k_out, k_state, k_data = jax.random.split(key, 4)
    dim = scale.state_mean.shape[0]
    params = Model(cell.init(k_cell, dim), readout.init(k_out, cell.hidden_size))

    def loss_fn(pred, states):  # MSE of the standardised increment
        err = pred[:, :-1] - states[:, 1:]
        err = err / along_last(scale.step_std, err)
        return jnp.mean(jnp.square(err))

    schedule = optax.cosine_decay_schedule(config["learning_rate"], config["steps"], alpha=0.05)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    step = train.make_train_step(lambda p, s: apply_fn(p, s)[0], loss_fn, optimizer)

    @jax.jit
    def chunk(state):
        def body(state, _):
            k = jax.random.fold_in(k_data, state.step)
            states = system_data(system, k, config["batch"], config["train_length"], config)
            state, metrics = step(state, (states, states))
            return state, metrics["loss"]

        return jax.lax.scan(body, state, None, length=config["log_every"])

    state = train.init_state(params, optimizer, key=k_state)
    curve = {"step": [], "loss": []}
    for _ in range(config["steps"] // config["log_every"]):
        state, chunk_losses = chunk(state)
        curve["step"].append(int(state.step))
        curve["loss"].append(float(jnp.mean(chunk_losses)))
        bar.update(config["log_every"])
    return state.params, (apply_fn, step_fn), curve


def rollout(apply_fn, step_fn, params, states, warmup: int):
    """Warm up on `states[:, :warmup]`, then run closed-loop to the end.

    Returns the predicted states `[B, T - warmup, D]` for steps warmup..T-1.
    """
    _, carry = apply_fn(params, states[:, : warmup - 1])
    state = states[:, warmup - 1]  # the last true state read; predictions follow it

    def body(c, _):
        carry, state = c
        carry, nxt = step_fn(params, carry, state)
        return (carry, nxt), nxt

    _, path = jax.lax.scan(body, (carry, state), None, length=states.shape[1] - warmup)
    return jnp.swapaxes(path, 0, 1)


def evaluate(system: str, fns, params, key, config: dict) -> dict:
    """One-step and rollout errors on fresh test trajectories.

    One-step: the model reads the true trajectory (teacher forcing); its
    predictions of steps warmup..T-1 are compared with the truth, and the
    persistence forecast with the same steps. (The first steps, where the
    carry is still empty, are reported apart as `one_step_mse_cold`.)
    Rollout: warm-up on the first `warmup` true states, then closed loop.
    """
    apply_fn, step_fn = fns
    warm, horizon = config["warmup"], config[f"{system}_rollout_steps"]
    states = system_data(system, key, config["test_batch"], warm + horizon, config)
    pred, _ = jax.jit(apply_fn)(params, states)
    one_step = float(losses.mse(pred[:, warm - 1 : -1], states[:, warm:]))
    persistence = float(tasks.persistence_mse(states[:, warm - 1 :]))
    cold = float(losses.mse(pred[:, : warm - 1], states[:, 1:warm]))
    path = jax.jit(rollout, static_argnums=(0, 1, 4))(apply_fn, step_fn, params, states, warm)
    dist = jnp.linalg.norm(path - states[:, warm:], axis=-1)  # [B, horizon]
    dt = config[f"{system}_dt"]
    out = {
        "one_step_mse": one_step,
        "persistence_mse": persistence,
        "ratio": persistence / one_step,
        "one_step_mse_cold": cold,
        "time": dt * np.arange(1, horizon + 1),
        "rms_error": np.asarray(jnp.sqrt(jnp.mean(jnp.square(dist), axis=0))),
        "mean_log_error": np.asarray(jnp.mean(jnp.log(dist + 1e-12), axis=0)),
        "example_true": np.asarray(states[0, warm:]),
        "example_rollout": np.asarray(path[0]),
    }
    if system == "lorenz":
        lo = np.exp(out["mean_log_error"][0]) * config["growth_from"]
        out["growth"] = growth_rate(out["time"], out["mean_log_error"], lo, config["saturation"])
    return out

"""The training step and the `fit` loop: learning, gradient norms, clipping, divergence."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_worker import adding_batches, mse, tiny_lstm_regressor

from lstmjax import tasks, train
from lstmjax.checkpoint import Checkpointer

INIT, APPLY = tiny_lstm_regressor()
OPT = optax.adam(1e-2)
STEP = train.make_train_step(APPLY, mse, OPT, clip_norm=1.0)  # shared: compiled once
EVAL = train.make_eval_step(APPLY, mse)
BATCHES = adding_batches()


def fresh_state(seed: int = 0) -> train.TrainState:
    return train.init_state(INIT(jax.random.key(seed)), OPT, jax.random.key(2))


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_adding_problem_loss_falls_well_below_baseline(tmp_path):
    held_out = tasks.adding_problem(jax.random.key(99), 512, 10)
    state, history = train.fit(
        STEP,
        fresh_state(),
        BATCHES,
        200,
        eval_fn=lambda p: EVAL(p, held_out),
        eval_every=50,
        log_path=tmp_path / "log.jsonl",
        quiet=True,
    )
    final = history.eval[-1]
    # Independent check of the reported evaluation: the MSE by hand, in float64.
    pred = np.asarray(APPLY(state.params, held_out[0]), np.float64)
    by_hand = np.mean((pred - np.asarray(held_out[1], np.float64)) ** 2)
    np.testing.assert_allclose(final["loss"], by_hand, rtol=1e-5)
    baseline = tasks.ADDING_BASELINE_MSE
    assert final["step"] == 200
    assert final["loss"] < 0.1 * baseline, (final["loss"], baseline)
    assert [r["step"] for r in history.eval] == [50, 100, 150, 200]
    assert len(history.train) == 200 and int(state.step) == 200
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [50, 100, 150, 200]
    assert sum(r["kind"] == "train" for r in records) == 200
    assert set(records[0]["grad_norms"]) == {"rnn", "head"}


@jax.jit
def independent_grads(params, batch):
    return jax.grad(lambda p: mse(APPLY(p, batch[0]), batch[1]))(params)


def norm64(tree) -> float:
    return math.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in leaves(tree)))


def test_grad_norm_is_the_global_norm_before_clipping():
    state, batch = fresh_state(), BATCHES(0)
    grads = independent_grads(state.params, batch)
    _, metrics = STEP(state, batch)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], norm64(grads), rtol=1e-5)
    for name in ("rnn", "head"):
        np.testing.assert_allclose(
            metrics["grad_norms"][name], norm64(getattr(grads, name)), rtol=1e-5
        )
    np.testing.assert_allclose(metrics["loss"], mse(APPLY(state.params, batch[0]), batch[1]))


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_clipping_bounds_the_update(clip):
    # With plain SGD (lr 1) the update is minus the (clipped) gradient, so its
    # norm must be min(|g|, clip): a hand formula, independent of optax.
    sgd = optax.sgd(1.0)
    step = train.make_train_step(APPLY, mse, sgd, clip_norm=clip)
    state = train.init_state(INIT(jax.random.key(0)), sgd, jax.random.key(2))
    batch = BATCHES(0)
    new, metrics = step(state, batch)
    delta = jax.tree_util.tree_map(lambda a, b: a - b, new.params, state.params)
    g = norm64(independent_grads(state.params, batch))
    assert clip is None or g > 10 * clip  # the test must actually clip
    expected = g if clip is None else clip
    np.testing.assert_allclose(norm64(delta), expected, rtol=1e-4)
    np.testing.assert_allclose(metrics["grad_norm"], g, rtol=1e-5)  # before clipping
    np.testing.assert_allclose(metrics["update_norm"], expected, rtol=1e-4)


def test_key_reaches_apply_fn_split_from_the_state():
    # apply_fn adds a uniform draw from its key; the loss reveals which key came.
    def apply(params, xs, key):
        return params * jnp.ones((xs.shape[0], 1)) + jax.random.uniform(key, (), jnp.float32)

    sgd = optax.sgd(0.0)
    step = train.make_train_step(apply, mse, sgd, with_key=True)
    state = train.init_state(jnp.zeros((), jnp.float32), sgd, jax.random.key(7))
    batch = (jnp.zeros((4, 3, 2), jnp.float32), jnp.zeros((4, 1), jnp.float32))
    for _ in range(3):
        rng, key = jax.random.split(state.rng)
        u = float(jax.random.uniform(key, (), jnp.float32))
        state, metrics = step(state, batch)
        np.testing.assert_allclose(metrics["loss"], u**2, rtol=1e-6)
        assert np.array_equal(jax.random.key_data(state.rng), jax.random.key_data(rng))
    eval_step = train.make_eval_step(
        lambda p, xs, key: p * jnp.ones((xs.shape[0], 1)), mse, with_key=True
    )
    assert float(eval_step(jnp.asarray(2.0, jnp.float32), batch)["loss"]) == 4.0


def test_non_finite_step_leaves_params_unchanged():
    state = fresh_state()
    xs, ys = BATCHES(0)
    new, metrics = STEP(state, (xs.at[3, 4, 0].set(jnp.nan), ys))
    assert not bool(metrics["finite"]) and not np.isfinite(float(metrics["loss"]))
    for a, b in zip(
        leaves(new.params) + leaves(new.opt_state),
        leaves(state.params) + leaves(state.opt_state),
        strict=True,
    ):
        assert np.array_equal(a, b)
    assert int(new.step) == 1


def test_nan_in_the_batch_stops_fit_and_keeps_the_last_good_checkpoint(tmp_path):
    bad_step = 7

    def batches(step):
        xs, ys = BATCHES(step)
        return (xs.at[0, 0, 0].set(jnp.nan), ys) if step == bad_step else (xs, ys)

    with pytest.raises(train.TrainingDiverged, match=f"diverged at step {bad_step}") as info:
        train.fit(
            STEP,
            fresh_state(),
            batches,
            20,
            checkpoint_dir=tmp_path / "ck",
            checkpoint_every=3,
            log_path=tmp_path / "log.jsonl",
            quiet=True,
        )
    assert info.value.step == bad_step
    assert str(tmp_path / "ck" / "6") in str(info.value)
    with Checkpointer(tmp_path / "ck") as ckpt:
        assert ckpt.latest_step() == 6 < bad_step
        restored = ckpt.restore(fresh_state())
    assert all(np.all(np.isfinite(x)) for x in leaves(restored.state.params))
    # The in-memory state handed back is the good one after step 6 updates 0..6.
    assert int(info.value.state.step) == bad_step
    assert all(np.all(np.isfinite(x)) for x in leaves(info.value.state.params))
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, bad_step + 1))


def test_fit_resumes_from_the_latest_checkpoint_in_process(tmp_path):
    straight, _ = train.fit(STEP, fresh_state(), BATCHES, 12, quiet=True)
    train.fit(
        STEP,
        fresh_state(),
        BATCHES,
        8,
        checkpoint_dir=tmp_path,
        checkpoint_every=4,
        log_path=tmp_path / "log.jsonl",
        quiet=True,
    )
    # A different starting state: the resumed run must ignore it and load step 8.
    resumed, history = train.fit(
        STEP,
        fresh_state(seed=5),
        BATCHES,
        12,
        checkpoint_dir=tmp_path,
        checkpoint_every=4,
        log_path=tmp_path / "log.jsonl",
        quiet=True,
    )
    assert [r["step"] for r in history.train] == [9, 10, 11, 12]
    for a, b in zip(
        leaves(straight.params) + leaves(straight.opt_state),
        leaves(resumed.params) + leaves(resumed.opt_state),
        strict=True,
    ):
        assert np.array_equal(a, b)
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="clip_norm must be a positive number"):
        train.make_train_step(APPLY, mse, OPT, clip_norm=-1.0)
    with pytest.raises(TypeError, match=r"a batch must be a pair \(xs, ys\)"):
        STEP(fresh_state(), BATCHES(0)[0])
    step = train.make_train_step(APPLY, lambda p, y: (p - y) ** 2, OPT)
    with pytest.raises(ValueError, match="loss_fn must return a scalar; got shape"):
        step(fresh_state(), BATCHES(0))
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint_dir"):
        train.fit(STEP, fresh_state(), BATCHES, 1, checkpoint_every=1, quiet=True)
    with pytest.raises(ValueError, match="eval_every must be an int >= 1; got 0"):
        train.fit(STEP, fresh_state(), BATCHES, 1, eval_every=0, quiet=True)


def test_fit_will_not_mix_two_runs_in_one_directory(tmp_path):
    train.fit(STEP, fresh_state(), BATCHES, 2, checkpoint_dir=tmp_path, quiet=True)
    with pytest.raises(ValueError, match=r"already holds checkpoints \[2\]; pass resume=True"):
        train.fit(
            STEP, fresh_state(), BATCHES, 2, checkpoint_dir=tmp_path, resume=False, quiet=True
        )


def test_progress_bar_shows_step_loss_and_rate_unless_quiet(capsys):
    state, _ = train.fit(STEP, fresh_state(), BATCHES, 3, quiet=False)
    shown = capsys.readouterr().err
    assert "3/3" in shown and "loss=" in shown and "steps_per_s=" in shown
    train.fit(STEP, state, BATCHES, 6, quiet=True)
    assert capsys.readouterr().err == ""

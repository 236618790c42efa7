"""The training step and the `fit` loop: learning, gradient norms, clipping, divergence."""

from __future__ import annotations

import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_worker import adding_batches, mse, tiny_lstm_regressor
from hostile import assert_clear

from lstmjax import tasks, train
from lstmjax.checkpoint import Checkpointer

INIT, APPLY = tiny_lstm_regressor()
OPT = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))  # clipping in the optimizer
STEP = train.make_train_step(APPLY, mse, OPT)  # shared: compiled once
EVAL = train.make_eval_step(APPLY, mse)
BATCHES = adding_batches()


def fresh_state(seed: int = 0) -> train.TrainState:
    return train.init_state(INIT(jax.random.key(seed)), OPT, key=jax.random.key(2))


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
        logging=train.Logging(path=tmp_path / "log.jsonl", quiet=True),
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
    if clip is not None:
        sgd = optax.chain(optax.clip_by_global_norm(clip), sgd)
    step = train.make_train_step(APPLY, mse, sgd)
    state = train.init_state(INIT(jax.random.key(0)), sgd)
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
    state = train.init_state(jnp.zeros((), jnp.float32), sgd, key=jax.random.key(7))
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
            logging=train.Logging(path=tmp_path / "log.jsonl", quiet=True),
            checkpointing=train.Checkpointing(tmp_path / "ck", every=3),
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
    straight, _ = train.fit(STEP, fresh_state(), BATCHES, 12, logging=train.Logging(quiet=True))
    train.fit(
        STEP,
        fresh_state(),
        BATCHES,
        8,
        logging=train.Logging(path=tmp_path / "log.jsonl", quiet=True),
        checkpointing=train.Checkpointing(tmp_path, every=4),
    )
    # A different starting state: the resumed run must ignore it and load step 8.
    resumed, history = train.fit(
        STEP,
        fresh_state(seed=5),
        BATCHES,
        12,
        logging=train.Logging(path=tmp_path / "log.jsonl", quiet=True),
        checkpointing=train.Checkpointing(tmp_path, every=4),
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
    with pytest.raises(TypeError, match="with_key must be True or False; got 1"):
        train.make_train_step(APPLY, mse, OPT, with_key=1)
    keyless = train.make_train_step(lambda p, xs, key: APPLY(p, xs), mse, OPT, with_key=True)
    with pytest.raises(ValueError, match=r"needs a key in the state: init_state\(.*key="):
        keyless(train.init_state(INIT(jax.random.key(0)), OPT), BATCHES(0))
    with pytest.raises(TypeError, match=r"a batch must be a pair \(xs, ys\)"):
        STEP(fresh_state(), BATCHES(0)[0])
    step = train.make_train_step(APPLY, lambda p, y: (p - y) ** 2, OPT)
    with pytest.raises(ValueError, match="loss_fn must return a scalar; got shape"):
        step(fresh_state(), BATCHES(0))
    with pytest.raises(TypeError, match=r"fit: checkpointing must be a train.Checkpointing"):
        train.fit(STEP, fresh_state(), BATCHES, 1, checkpointing="ck")
    with pytest.raises(ValueError, match="eval_every must be an int >= 1; got 0"):
        train.fit(STEP, fresh_state(), BATCHES, 1, eval_every=0, logging=train.Logging(quiet=True))


def test_fit_will_not_mix_two_runs_in_one_directory(tmp_path):
    train.fit(
        STEP,
        fresh_state(),
        BATCHES,
        2,
        logging=train.Logging(quiet=True),
        checkpointing=train.Checkpointing(tmp_path),
    )
    with pytest.raises(
        ValueError, match=r"already holds checkpoints \[2\]; pass Checkpointing\(..., resume=True\)"
    ):
        train.fit(
            STEP,
            fresh_state(),
            BATCHES,
            2,
            logging=train.Logging(quiet=True),
            checkpointing=train.Checkpointing(tmp_path, resume=False),
        )


def test_progress_bar_shows_step_loss_and_rate_unless_quiet(capsys):
    state, _ = train.fit(STEP, fresh_state(), BATCHES, 3, logging=train.Logging(quiet=False))
    shown = capsys.readouterr().err
    assert "3/3 steps" in shown and "loss=" in shown
    # One rate, of the steps after the first; the first step (with compilation) apart.
    assert "steps/s after the first" in shown and "first step (compiling it)" in shown
    assert re.search(r"first step \d+\.\d s with compilation", shown)
    assert "step/s" not in shown and "s/step" not in shown and "it/s" not in shown  # tqdm's rate
    train.fit(STEP, state, BATCHES, 6, logging=train.Logging(quiet=True))
    assert capsys.readouterr().err == ""


def test_a_finished_state_trains_nothing_and_says_so(capsys):
    """fit's docstring: a state already at num_steps runs no step and no evaluation (empty
    history), saying so; one past num_steps is refused, as a checkpoint past it is."""
    state, _ = train.fit(STEP, fresh_state(), BATCHES, 2, logging=train.Logging(quiet=True))
    evaluated = []
    again, history = train.fit(
        STEP,
        state,
        BATCHES,
        2,
        eval_fn=lambda p: evaluated.append(1) or {"x": 0.0},
        logging=train.Logging(quiet=True),
    )
    assert (history.train, history.eval, history.resumed_from, evaluated) == ([], [], None, [])
    assert again is state
    assert "fit: the state is already at num_steps=2; nothing to train" in capsys.readouterr().err
    assert_clear(
        ValueError,
        lambda: train.fit(STEP, state, BATCHES, 1, logging=train.Logging(quiet=True)),
        r"fit: the state is at step 2, past num_steps=1 \(num_steps counts the run's updates, "
        r"not this call's\): pass num_steps > 2 to train on, or start from init_state",
    )


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: train.Checkpointing(None), TypeError, "Checkpointing: directory must be a path"),
        (lambda: train.Checkpointing("ck", every=0), ValueError, "Checkpointing: every must be"),
        (lambda: train.Checkpointing("ck", keep=1.5), TypeError, "Checkpointing: keep must be"),
        (lambda: train.Checkpointing("ck", resume="yes"), TypeError, "Checkpointing: resume must"),
        (lambda: train.Checkpointing("ck", on_save=3), TypeError, "Checkpointing: on_save must"),
        (lambda: train.Checkpointing("ck", optimizer="adam"), TypeError, "optimizer must be an"),
        (lambda: train.Checkpointing("ck", fingerprint=1), TypeError, "fingerprint must be a str"),
        (lambda: train.Logging(every=0), ValueError, "Logging: every must be an int >= 1; got 0"),
        (lambda: train.Logging(quiet=None), TypeError, "Logging: quiet must be True or False"),
        (lambda: train.Logging(path=5), TypeError, "Logging: path must be a path"),
    ],
)
def test_option_objects_check_their_fields_when_built(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_options_are_frozen_values_with_documented_defaults(tmp_path):
    options = train.Checkpointing(str(tmp_path))
    assert options.directory == tmp_path and options.every is None and options.keep == 3
    assert options.resume is True and options.optimizer is None and options.fingerprint is None
    assert train.Logging() == train.Logging(path=None, every=1, quiet=False)
    assert hash(train.Logging(every=2)) == hash(train.Logging(every=2))
    with pytest.raises(AttributeError):
        options.keep = 5  # type: ignore[misc]


MEMBERS = 3


def population(seed: int = 0) -> train.TrainState:
    """What JAX users write: `jax.vmap(init_state)` over per-member keys."""
    keys = jax.random.split(jax.random.key(seed), MEMBERS)
    return jax.vmap(lambda k: train.init_state(INIT(k), OPT, key=k))(keys)


def test_fit_trains_a_vmapped_step_and_logs_each_member(tmp_path):
    step = jax.vmap(STEP, in_axes=(0, None))  # one shared batch for every member
    state, history = train.fit(
        step, population(), BATCHES, 4,
        logging=train.Logging(path=tmp_path / "log.jsonl", quiet=True),
        checkpointing=train.Checkpointing(tmp_path / "ck", every=2),
    )  # fmt: skip
    assert state.step.shape == (MEMBERS,) and np.all(np.asarray(state.step) == 4)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(len(r["loss"]) == MEMBERS and len(r["finite"]) == MEMBERS for r in records)
    # Member m follows the single run started from member m's state, step by step.
    for m in range(MEMBERS):
        single = train.member_state(population(), m)
        losses = []
        for n in range(4):
            single, metrics = STEP(single, BATCHES(n))
            losses.append(float(metrics["loss"]))
        np.testing.assert_allclose([r["loss"][m] for r in history.train], losses, rtol=1e-6)
        for a, b in zip(leaves(train.member_state(state, m).params), leaves(single.params),
                        strict=True):  # fmt: skip
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # A resumed population continues from its checkpoint, every member at once.
    again, rest = train.fit(
        step,
        population(seed=9),
        BATCHES,
        6,
        logging=train.Logging(quiet=True),
        checkpointing=train.Checkpointing(tmp_path / "ck", every=2),
    )
    assert rest.resumed_from == 4 and [r["step"] for r in rest.train] == [5, 6]
    assert np.all(np.asarray(again.step) == 6)


def test_plain_vmap_maps_the_batch_too_one_batch_per_member():
    step = jax.vmap(STEP)  # in_axes=0 everywhere: batch_fn gives [M, B, ...]

    def per_member(n):
        return jax.tree_util.tree_map(
            lambda *b: jnp.stack(b), *[BATCHES(MEMBERS * n + m) for m in range(MEMBERS)]
        )

    _, history = train.fit(step, population(), per_member, 2,
                               logging=train.Logging(quiet=True))  # fmt: skip
    single = train.member_state(population(), 1)
    for n in range(2):
        single, metrics = STEP(single, BATCHES(MEMBERS * n + 1))
    np.testing.assert_allclose(history.train[-1]["loss"][1], float(metrics["loss"]), rtol=1e-6)


def test_a_diverging_member_is_named_and_the_others_keep_training():
    step = jax.vmap(STEP, in_axes=(0, None))
    start = population()
    # Member 1 gets NaN parameters in its head: its loss is NaN from the first step.
    head = start.params.head._replace(b=start.params.head.b.at[1].set(jnp.nan))
    start = start._replace(params=start.params._replace(head=head))
    with pytest.raises(train.TrainingDiverged, match=r"at step 0 in member \[1\] of 3") as info:
        train.fit(step, start, BATCHES, 3, logging=train.Logging(quiet=True))
    assert info.value.members == [1] and info.value.step == 0
    assert info.value.metrics["finite"] == [True, False, True]


def test_ensemble_layout_equals_the_vmapped_step():
    state = population()
    a, ma = jax.jit(jax.vmap(STEP, in_axes=(0, None)))(state, BATCHES(0))
    b, mb = train.ensemble(STEP)(state, BATCHES(0))
    np.testing.assert_allclose(mb["loss"], ma["loss"], rtol=1e-6)
    for x, y in zip(leaves(a.params), leaves(b.params), strict=True):
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7)
    assert not np.allclose(ma["loss"][0], ma["loss"][1])  # the members really differ

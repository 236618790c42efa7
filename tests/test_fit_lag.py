"""`fit` reads metrics `metrics_lag` steps late: same records, same state, same divergence stop."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from _train_worker import OPTIMIZER, fit_setup

from lstmjax import train

INIT, STEP, BATCHES = fit_setup()  # shared by the test modules: one compilation
OPT = OPTIMIZER  # the optimizer inside STEP


def fresh() -> train.TrainState:
    return train.init_state(INIT(jax.random.key(0)), OPT, key=jax.random.key(2))


def bits(state) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves((state.params, state.opt_state))]


@pytest.fixture(scope="module")
def by_hand():
    """The reference: a plain loop over the same step, every loss read as it comes."""
    state, losses = fresh(), []
    for i in range(9):
        state, metrics = STEP(state, BATCHES(i))
        losses.append(float(metrics["loss"]))
    return state, losses


@pytest.mark.parametrize("lag", [0, 1, 2, 5, 20])
def test_every_lag_gives_the_plain_loops_records_and_state(by_hand, lag, tmp_path):
    state, history = train.fit(
        STEP,
        fresh(),
        BATCHES,
        9,
        eval_fn=lambda p: {"n": 1},
        eval_every=4,
        metrics_lag=lag,
        logging=train.Logging(path=tmp_path / "log.jsonl", quiet=True),
    )
    assert [r["step"] for r in history.train] == list(range(1, 10))
    assert [r["loss"] for r in history.train] == by_hand[1]
    assert [r["step"] for r in history.eval] == [4, 8, 9]
    kinds = [
        (r["kind"], r["step"])
        for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
    ]
    # Each evaluation follows the train record of its step, as with lag 0.
    assert kinds.index(("eval", 4)) == kinds.index(("train", 4)) + 1
    for a, b in zip(bits(state), bits(by_hand[0]), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("lag", [0, 3])
def test_a_lagged_divergence_stops_at_the_bad_step_with_the_state_before_it(lag, tmp_path):
    def batches(step):
        xs, ys = BATCHES(step)
        return (xs.at[0, 0, 0].set(np.nan), ys) if step == 7 else (xs, ys)

    with pytest.raises(train.TrainingDiverged, match="diverged at step 7") as info:
        train.fit(
            STEP,
            fresh(),
            batches,
            20,
            metrics_lag=lag,
            logging=train.Logging(path=tmp_path / "log.jsonl", quiet=True),
            checkpointing=train.Checkpointing(tmp_path / "ck", every=3),
        )
    assert info.value.step == 7 and int(info.value.state.step) == 7
    assert str(tmp_path / "ck" / "6") in str(info.value)
    reference = fresh()
    for i in range(7):
        reference, _ = STEP(reference, BATCHES(i))
    for a, b in zip(bits(info.value.state), bits(reference), strict=True):
        assert np.array_equal(a, b)
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))  # nothing of the steps dispatched past it


def test_metrics_lag_is_checked():
    with pytest.raises(ValueError, match="metrics_lag must be an int >= 0; got -1"):
        train.fit(STEP, fresh(), BATCHES, 1, metrics_lag=-1, logging=train.Logging(quiet=True))

"""Checkpoints: exact round trip, keep-last-k, atomic writes, refusals with clear messages.

Damaged checkpoints, optimizer identity and the writer lock: test_checkpoint_integrity.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_worker import OPTIMIZER, adding_batches, mse, tiny_lstm_regressor

from lstmjax import train
from lstmjax._checkpointing import storage
from lstmjax.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointWarning,
    NonFiniteStateError,
    latest_step,
)

WORKER = Path(__file__).with_name("_train_worker.py")
INIT, APPLY = tiny_lstm_regressor()
OPT = OPTIMIZER  # the one the worker process uses too


STEP = train.make_train_step(APPLY, mse, OPT)
BATCHES = adding_batches()


def trained_state(steps: int = 3) -> train.TrainState:
    """A state with non-trivial optimizer moments and a moved key."""
    state = train.init_state(INIT(jax.random.key(0)), OPT, key=jax.random.key(2))
    for i in range(steps):
        state, _ = STEP(state, BATCHES(i))
    return state


def like(hidden: int = 16, optimizer=OPT, key=None) -> train.TrainState:
    init, _ = tiny_lstm_regressor(hidden)
    key = jax.random.key(123) if key is None else key
    return train.init_state(init(jax.random.key(42)), optimizer, key=key)


def assert_same(a, b) -> None:
    a_leaves, b_leaves = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(a_leaves) == len(b_leaves)
    for x, y in zip(a_leaves, b_leaves, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.array_equal(np.asarray(x), np.asarray(y))


def key_bits(state):
    return np.asarray(jax.random.key_data(state.rng))


def test_round_trip_is_bit_exact(tmp_path):
    state = trained_state()
    with Checkpointer(tmp_path) as ckpt:
        path = ckpt.save(state, data_position={"epoch": 1, "offset": 17})
        assert path == tmp_path / "3" and path.is_dir()
        restored = ckpt.restore(like())
    assert restored.step == 3 and restored.data_position == {"epoch": 1, "offset": 17}
    assert type(restored.state) is train.TrainState
    assert_same(restored.state.params, state.params)
    assert_same(restored.state.opt_state, state.opt_state)
    assert int(restored.state.step) == 3 and restored.state.step.dtype == jnp.int32
    assert jnp.issubdtype(restored.state.rng.dtype, jax.dtypes.prng_key)
    assert np.array_equal(key_bits(restored.state), key_bits(state))
    assert latest_step(tmp_path) == 3


def test_raw_uint32_keys_round_trip(tmp_path):
    state = trained_state(1)._replace(rng=jax.random.PRNGKey(5))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(state)
        restored = ckpt.restore(like(key=jax.random.PRNGKey(0)))
    assert restored.state.rng.dtype == jnp.uint32
    assert np.array_equal(restored.state.rng, jax.random.PRNGKey(5))
    assert restored.data_position == 1  # default: the step, the next batch index


def test_keeps_the_last_k(tmp_path):
    state = like()
    with Checkpointer(tmp_path, keep=2) as ckpt:
        for step in range(1, 6):
            ckpt.save(state._replace(step=jnp.asarray(step, jnp.int32)))
        assert ckpt.steps() == [4, 5]
        with pytest.raises(FileNotFoundError, match=r"no checkpoint 2 .* have \[4, 5\]"):
            ckpt.restore(like(), step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lstmjax.lock", "4", "5"]


def test_refuses_to_save_non_finite_state(tmp_path):
    state = like()
    bad = state._replace(
        params=state.params._replace(
            head=state.params.head._replace(b=jnp.full_like(state.params.head.b, jnp.nan))
        )
    )
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(NonFiniteStateError, match=r"non-finite values in \['params.head.b'\]"):
            ckpt.save(bad)
        assert ckpt.latest_step() is None


def test_shape_mismatch_names_the_leaf_and_both_shapes(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(like(hidden=16))
        with pytest.raises(CheckpointMismatchError) as info:
            ckpt.restore(like(hidden=8))
    message = str(info.value)
    # The first parameter in flatten order is the LSTM's input kernel [I, 4H].
    assert "leaf 'params.rnn.w_x'" in message
    assert "shape (2, 64) in the checkpoint" in message and "shape (2, 32) in the state" in message
    assert "more leaves differ in shape" in message


def test_optimizer_mismatch_is_a_structure_error(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(like())
        with pytest.raises(CheckpointMismatchError, match="different structure"):
            ckpt.restore(like(optimizer=optax.sgd(0.1, momentum=0.9)))


def test_dtype_mismatch_is_refused(tmp_path):
    state = like()
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(state)
        wide = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), state.params)
        with pytest.raises(CheckpointMismatchError, match="dtype float32 in the checkpoint"):
            ckpt.restore(train.init_state(wide, OPT, key=jax.random.key(0)))


def test_restore_from_an_empty_directory(tmp_path):
    with Checkpointer(tmp_path) as ckpt, pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.restore(like())


def test_save_interrupted_before_commit_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    # Fail at the commit point: every file of step 2 is written into
    # `.2.saving/`, but the rename that publishes it never happens.
    first = like()._replace(step=jnp.asarray(1, jnp.int32))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(first)

    def crash(staging, final):
        assert staging.name == ".2.saving" and (staging / "state").is_dir()
        raise OSError("simulated crash during commit")

    monkeypatch.setattr(storage, "commit", crash)  # lstmjax's own function
    second = trained_state(2)
    with Checkpointer(tmp_path) as ckpt, pytest.raises(OSError, match="simulated crash"):
        ckpt.save(second)
    monkeypatch.undo()
    assert (tmp_path / ".2.saving").is_dir()
    with Checkpointer(tmp_path) as ckpt:
        assert not (tmp_path / ".2.saving").exists()  # a new writer removes the leftover
        assert ckpt.steps() == [1]
        restored = ckpt.restore(like())
        assert_same(restored.state.params, first.params)
        ckpt.save(second)  # and saving step 2 again works
        assert ckpt.steps() == [1, 2]
        assert_same(ckpt.restore(like()).state.params, second.params)


@pytest.mark.integration  # a fresh interpreter killed or started mid-run
def test_process_killed_while_saving_keeps_the_previous_checkpoint(tmp_path):
    # A real SIGKILL, delivered while the worker is inside the save of step 2.
    ckpt_dir = tmp_path / "ck"
    lines = []
    with subprocess.Popen(
        [sys.executable, str(WORKER), "hang", "--ckpt", str(ckpt_dir)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            for line in proc.stdout:
                lines.append(line.strip())
                if line.strip() == "COMMITTING":
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert lines == ["SAVED 1", "COMMITTING"] and proc.returncode == -signal.SIGKILL
    names = {p.name for p in ckpt_dir.iterdir()}
    assert names == {"1", ".2.saving", ".lstmjax.lock"}  # the half-published step 2
    # The killed writer never released its lock: the next one takes it over, saying so.
    with pytest.warns(CheckpointWarning, match=rf"taking over the lock .* pid {proc.pid} on host"):
        ckpt = Checkpointer(ckpt_dir)
    with ckpt:
        assert ckpt.steps() == [1]
        restored = ckpt.restore(like())
        assert_same(restored.state.params, INIT(jax.random.key(0)))
        # Saving the interrupted step again works; the leftover is gone.
        ckpt.save(restored.state._replace(step=jnp.asarray(2, jnp.int32)))
        assert ckpt.steps() == [1, 2]
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [".lstmjax.lock", "1", "2"]

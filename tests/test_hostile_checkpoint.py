"""Hostile inputs to the checkpoint directory and to saves that cannot be written.

Each case must raise a clear error from inside lstmjax (`hostile.assert_clear`)
that says what happened, where, and what is left; a real full disk (a file-size
limit in a subprocess) is in `test_hostile_multiprocess.py` (integration tier).
"""

from __future__ import annotations

import shutil

import jax.numpy as jnp
import numpy as np
import optax
from hostile import assert_clear

from lstmjax import checkpoint, train

OPT = optax.sgd(0.1)
STATE = train.init_state({"w": jnp.ones(3)}, OPT)


def step_fn(state, batch):
    return state, {"loss": jnp.zeros(())}


# --- the checkpoint directory ------------------------------------------------------------


def test_checkpoint_directory_that_is_a_file(tmp_path):
    path = tmp_path / "ckpt"
    path.write_text("not a directory")
    assert_clear(
        NotADirectoryError,
        lambda: checkpoint.Checkpointer(path),
        rf"checkpoint directory {path} is an existing file, not a directory",
    )
    assert_clear(
        NotADirectoryError,
        lambda: train.fit(
            step_fn,
            STATE,
            lambda s: None,
            1,
            checkpointing=train.Checkpointing(path),
            logging=train.Logging(quiet=True),
        ),
        r"is an existing file, not a directory",
    )
    assert_clear(
        NotADirectoryError,
        lambda: checkpoint.Checkpointer(path / "run"),
        rf"cannot create checkpoint directory {path}/run: {path} is a file, not a directory",
    )
    with checkpoint.Checkpointer(path, writer=False) as reader:
        assert_clear(FileNotFoundError, lambda: reader.restore(STATE), r"it is a file")


def test_checkpoint_directory_of_another_type():
    assert_clear(
        TypeError,
        lambda: checkpoint.Checkpointer(3),
        r"Checkpointer: directory must be a path \(str or os\.PathLike\); got 3 \(int\)",
    )
    assert_clear(
        TypeError,
        lambda: checkpoint.Checkpointer("ckpt", writer="yes"),
        r"writer must be True or False; got 'yes'",
    )


def test_metrics_log_path_that_is_a_directory(tmp_path):
    assert_clear(
        IsADirectoryError,
        lambda: train.fit(step_fn, STATE, lambda s: None, 1, logging=train.Logging(tmp_path)),
        rf"the metrics log path {tmp_path} is an existing directory",
    )


# TensorStore's error when the disk fills while orbax writes the arrays (this is the
# message observed with RLIMIT_FSIZE, shortened; test_hostile_multiprocess.py checks the
# real thing in a subprocess).
TENSORSTORE_ENOSPC = (
    'OUT_OF_RANGE: Error writing "params.w/0.0" in OCDBT database at local file "{path}": '
    "Failed to write 56773 bytes to file 12: No space left on device [os_error_code='28']"
)


def test_disk_full_during_a_save_names_the_step_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    from lstmjax._checkpointing import storage

    directory = tmp_path / "ckpt"
    with checkpoint.Checkpointer(directory) as ckpt:
        ckpt.save(STATE._replace(step=jnp.asarray(1, jnp.int32)))
        ckpt.save(STATE._replace(step=jnp.asarray(2, jnp.int32)))
        real_write = storage.write

        def full_disk(orbax, path, args):
            # Part of the step lands on disk, then the disk is full, as with TensorStore.
            (path.parent / f"{path.name}.orbax-checkpoint-tmp").mkdir()
            (path.parent / f"{path.name}.orbax-checkpoint-tmp" / "d").write_bytes(b"x" * 100)
            raise ValueError(TENSORSTORE_ENOSPC.format(path=path))

        monkeypatch.setattr(storage, "write", full_disk)
        message = assert_clear(
            OSError,
            lambda: ckpt.save(STATE._replace(step=jnp.asarray(3, jnp.int32))),
            rf"\[Errno 28\] could not save checkpoint step 3 in {directory}: No space left on "
            r"device",
            r"Nothing of step 3 was committed and its partial files were removed",
            rf"the earlier checkpoints \[1, 2\] in {directory} are intact",
            r"resumes from step 2",
        )
        assert "os_error_code" not in message
        assert sorted(p.name for p in directory.iterdir()) == [".lstmjax.lock", "1", "2"]
        monkeypatch.setattr(storage, "write", real_write)
        restored = ckpt.restore(STATE)
        assert restored.step == 2
        np.testing.assert_array_equal(restored.state.params["w"], STATE.params["w"])


def test_disk_full_while_writing_the_file_list(tmp_path, monkeypatch):
    from lstmjax._checkpointing import checkpointer

    directory = tmp_path / "ckpt"
    with checkpoint.Checkpointer(directory) as ckpt:

        def no_room(staging):
            raise OSError(28, "No space left on device", str(staging / "lstmjax_manifest.json"))

        monkeypatch.setattr(checkpointer, "file_manifest", no_room)
        assert_clear(
            OSError,
            lambda: ckpt.save(STATE._replace(step=jnp.asarray(1, jnp.int32))),
            rf"could not save checkpoint step 1 in {directory}: No space left on device",
            rf"{directory} holds no earlier checkpoint",
        )
        assert sorted(p.name for p in directory.iterdir()) == [".lstmjax.lock"]


STORED = STATE.params["w"].dtype  # float64 under the suite's x64


def test_mismatch_says_what_to_do(tmp_path):
    with checkpoint.Checkpointer(tmp_path) as ckpt:
        ckpt.save(STATE)
        other = train.init_state({"w": jnp.ones(4)}, OPT)
        assert_clear(
            checkpoint.CheckpointMismatchError,
            lambda: ckpt.restore(other),
            rf"checkpoint {tmp_path}/0: leaf 'params\.w' has shape \(3,\) in the checkpoint "
            r"but shape \(4,\)",
            rf"use a new checkpoint directory \(or delete {tmp_path}; ",
            r"Checkpointing\(\.\.\., resume=False\) refuses a directory that holds checkpoints",
            r"To continue the stored run, build the state with the model it was written with "
            r"\('params\.w' of shape \(3,\)\)\.$",
        )
        wide = train.init_state({"w": jnp.ones(3, jnp.float16)}, OPT)
        assert_clear(
            checkpoint.CheckpointMismatchError,
            lambda: ckpt.restore(wide),
            rf"leaf 'params\.w' has dtype {STORED} in the checkpoint but dtype float16",
            rf"build the state in the dtypes it was written with \('params\.w' in {STORED}; ",
        )


def mse_step():
    """A real one-parameter-vector step, so that `fit` counts steps and saves."""
    return train.make_train_step(
        lambda p, xs: xs * p["w"], lambda pred, ys: jnp.mean((pred - ys) ** 2), OPT
    )


def test_the_mismatch_advice_is_what_fit_allows(tmp_path):
    """Each way out that the CheckpointMismatchError names works, and the one it warns
    about (resume=False in the same directory) is refused."""
    step, old, new = mse_step(), STATE, train.init_state({"w": jnp.ones(4)}, OPT)

    def batches(width):
        return lambda n: (jnp.ones(width), jnp.zeros(width))

    def fit(state, width, directory, num_steps, resume=True):
        checkpointing = train.Checkpointing(directory, resume=resume)
        return train.fit(step, state, batches(width), num_steps, checkpointing=checkpointing,
                         logging=train.Logging(quiet=True))  # fmt: skip

    run = tmp_path / "run"
    fit(old, 3, run, 1)  # the stored run: w of 3, at step 1
    assert_clear(
        checkpoint.CheckpointMismatchError,
        lambda: fit(new, 4, run, 2),
        rf"checkpoint {run}/1: leaf 'params\.w' has shape \(3,\)",
        rf"use a new checkpoint directory \(or delete {run};",
    )
    assert_clear(ValueError, lambda: fit(new, 4, run, 2, resume=False), r"already holds")
    # A new directory: a fresh run of the new model.
    assert fit(new, 4, tmp_path / "other", 2)[1].resumed_from is None
    # The old settings: the stored run continues.
    assert fit(old, 3, run, 2)[1].resumed_from == 1
    # The directory deleted: a fresh run of the new model in it.
    shutil.rmtree(run)
    state, history = fit(new, 4, run, 2)
    assert history.resumed_from is None and int(state.step) == 2

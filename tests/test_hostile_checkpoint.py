"""Hostile inputs to the checkpoint directory and to saves that cannot be written.

Each case must raise a clear error from inside lstmjax (`hostile.assert_clear`)
that says what happened, where, and what is left; a real full disk (a file-size
limit in a subprocess) is in `test_hostile_multiprocess.py` (integration tier).
"""

from __future__ import annotations

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


def test_mismatch_says_what_to_do(tmp_path):
    with checkpoint.Checkpointer(tmp_path) as ckpt:
        ckpt.save(STATE)
        other = train.init_state({"w": jnp.ones(4)}, OPT)
        assert_clear(
            checkpoint.CheckpointMismatchError,
            lambda: ckpt.restore(other),
            r"leaf 'params\.w' has shape \(3,\) in the checkpoint but shape \(4,\)",
            r"use a new checkpoint directory",
            r"resume=False\) refuses a directory that holds checkpoints",
            r"To continue the stored run, build the state with the model",
        )

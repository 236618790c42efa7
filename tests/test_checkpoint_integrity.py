"""Damaged checkpoints, stray directories, optimizer identity, the writer lock, the metrics log.

Each damage case breaks the newest step (4) of a copy of one run, lets
`fit` continue it to step 6, and checks (a) the warning names the step's
directory and what is wrong, (b) `fit` resumed from step 2, the newest
intact one, and (c) the result is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from _train_worker import OPTIMIZER, fit_setup

from lstmjax import checkpoint, train
from lstmjax._checkpointing import storage
from lstmjax._checkpointing.fingerprint import optimizer_identity
from lstmjax._checkpointing.integrity import MANIFEST, content_record, file_manifest, leaf_name
from lstmjax.checkpoint import (
    CheckpointCorruptError,
    Checkpointer,
    CheckpointLockedError,
    CheckpointWarning,
    OptimizerMismatchError,
)

WORKER = Path(__file__).with_name("_train_worker.py")
INIT, STEP, BATCHES = fit_setup()  # shared by the test modules: one compilation
OPT = OPTIMIZER  # the optimizer inside STEP


def clipped(optimizer):
    return optax.chain(optax.clip_by_global_norm(1.0), optimizer)


def fresh(seed: int = 0, optimizer=OPT) -> train.TrainState:
    return train.init_state(INIT(jax.random.key(seed)), optimizer, key=jax.random.key(2))


def leaves(state) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves((state.params, state.opt_state))]


def assert_bit_identical(a, b) -> None:
    for x, y in zip(leaves(a), leaves(b), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run checkpointed at steps 2 and 4, and the same run straight to step 6."""
    base = tmp_path_factory.mktemp("runs") / "base"
    train.fit(
        STEP,
        fresh(),
        BATCHES,
        4,
        logging=train.Logging(quiet=True),
        checkpointing=train.Checkpointing(base, every=2, optimizer=OPT),
    )
    reference, _ = train.fit(STEP, fresh(), BATCHES, 6, logging=train.Logging(quiet=True))
    return base, reference


@pytest.fixture
def ck(runs, tmp_path) -> Path:
    shutil.copytree(runs[0], tmp_path / "ck")
    return tmp_path / "ck"


def continue_to(ck: Path, num_steps: int = 6, start=None, optimizer=OPT, fingerprint=None,
                log_path=None):  # fmt: skip
    """`fit` on `ck`; a resume must ignore `start` (by default another seed's state)."""
    start = fresh(seed=5, optimizer=optimizer or OPT) if start is None else start
    checkpointing = train.Checkpointing(ck, every=2, optimizer=optimizer, fingerprint=fingerprint)
    logging = train.Logging(path=log_path, quiet=True)
    return train.fit(STEP, start, BATCHES, num_steps, logging=logging, checkpointing=checkpointing)


def data_file(step_dir: Path) -> Path:
    """The largest array-data file of a step (orbax's compressed chunks)."""
    return max((step_dir / "state").rglob("d/*"), key=lambda p: p.stat().st_size)


def flip_a_bit(step: Path) -> None:
    data = bytearray(data_file(step).read_bytes())
    data[len(data) // 2] ^= 0b1000
    data_file(step).write_bytes(bytes(data))


def truncate_data(step: Path) -> None:
    f = data_file(step)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def empty_data(step: Path) -> None:
    data_file(step).write_bytes(b"")


def delete_metadata(step: Path) -> None:
    (step / "state" / "_METADATA").unlink()


def half_write_record(step: Path) -> None:
    record = step / "meta" / "metadata"
    record.write_text(record.read_text()[: len(record.read_text()) // 2])


def delete_record(step: Path) -> None:
    shutil.rmtree(step / "meta")


def half_write_manifest(step: Path) -> None:
    manifest = step / "lstmjax_manifest.json"
    manifest.write_text(manifest.read_text()[:40])


def delete_manifest(step: Path) -> None:
    (step / "lstmjax_manifest.json").unlink()


DATA = r"state/(ocdbt\.process_0/)?d/\w+"
DAMAGE = {
    "bit flip": (flip_a_bit, rf"damaged: its file {DATA} does not match the checksum written"),
    "truncated data file": (
        truncate_data,
        rf"damaged: its file {DATA} is \d+ bytes, \d+ bytes when",
    ),
    "empty data file": (empty_data, rf"damaged: its file {DATA} is empty, \d+ bytes when saved"),
    "missing _METADATA": (delete_metadata, r"damaged: its file state/_METADATA is missing"),
    "half-written JSON record": (
        half_write_record,
        r"damaged: its file meta/metadata is \d+ bytes",
    ),
    "deleted JSON record": (delete_record, r"damaged: its file meta/\S+ is missing"),
    "half-written file list": (
        half_write_manifest,
        r"damaged: its file list lstmjax_manifest.json cannot be read \(JSONDecodeError",
    ),
    "deleted file list": (
        delete_manifest,
        r"damaged: its file list lstmjax_manifest.json is missing",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_latest_step_is_skipped_and_the_run_ends_bit_identical(case, runs, ck, capsys):
    damage, reason = DAMAGE[case]
    damage(ck / "4")
    with pytest.warns(CheckpointWarning) as caught:
        state, history = continue_to(ck)
    messages = [str(w.message) for w in caught]
    skipped = [m for m in messages if m.startswith(f"skipping {ck / '4'} (step 4)")]
    assert len(skipped) == 1 and re.search(reason, skipped[0]), messages
    assert any(f"renamed the damaged {ck / '4'} to 4.damaged" in m for m in messages), messages
    assert history.resumed_from == 2
    assert f"fit: resumed from {ck / '2'} (step 2;" in capsys.readouterr().err
    assert_bit_identical(state, runs[1])
    # The damaged step is kept aside, not deleted; the run's own steps are intact.
    assert (ck / "4.damaged").is_dir()
    with Checkpointer(ck, writer=False) as ckpt:
        assert ckpt.steps() == [2, 4, 6]
        assert_bit_identical(ckpt.restore(fresh()).state, runs[1])


def test_a_flipped_bit_behind_a_matching_file_list_is_caught_by_the_array_checksums(ck):
    # The second line of defence, and the reason checksums exist at all: orbax
    # reads a flipped chunk without complaint. The file list is rewritten to
    # match, as if the bit had flipped before the step was written out.
    flip_a_bit(ck / "4")
    (ck / "4" / MANIFEST).write_text(json.dumps(file_manifest(ck / "4")))
    like = storage.storable(fresh())
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
    raw = storage.orbax_checkpointer().restore(
        ck / "4",
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)),
    )
    with Checkpointer(ck, writer=False) as ckpt:
        intact = ckpt.restore(fresh(), step=2)  # an intact step reads fine
        assert intact.step == 2
        with pytest.raises(CheckpointCorruptError) as info:
            ckpt.restore(fresh(), step=4)
    message = str(info.value)
    assert f"checkpoint {ck / '4'} is damaged: leaf '" in message and "checksum" in message
    name = message.split("leaf '")[1].split("'")[0]
    by_name = {
        leaf_name(p): x
        for p, x in jax.tree_util.tree_flatten_with_path(train.TrainState(*raw["state"]))[0]
    }
    record = json.loads((ck / "4" / "meta" / "metadata").read_text())["content"][name]
    values = np.asarray(by_name[name])
    assert values.shape == tuple(record["shape"])  # the leaf reads back with its shape...
    assert content_record({"x": values})["x"]["sha256"] != record["sha256"]  # ...but wrong


def test_no_intact_step_is_a_clear_error_and_changes_nothing(ck):
    flip_a_bit(ck / "4")
    delete_metadata(ck / "2")
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointCorruptError) as info:
        continue_to(ck)
    message = str(info.value)
    assert message.startswith(f"no intact checkpoint in {ck}: step 4: its file state/")
    assert "; step 2: its file state/_METADATA is missing" in message
    assert sorted(p.name for p in ck.iterdir()) == [".lstmjax.lock", "2", "4"]


def test_stray_step_directories_are_set_aside_with_a_warning(runs, ck):
    (ck / "9").mkdir()  # empty, named like a newer step
    (ck / "7").mkdir()
    (ck / "7" / "notes.txt").write_text("mine")
    (ck / "runs-notes").mkdir()  # not named like a step: not ours to judge, left alone
    with pytest.warns(CheckpointWarning) as caught:
        state, history = continue_to(ck)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    for step in (7, 9):
        assert any(
            m.startswith(f"ignoring {ck / str(step)}: named like a step but not an lstmjax")
            and f"renamed it to {step}.not-a-checkpoint" in m
            for m in messages
        ), messages
    assert history.resumed_from == 4
    assert_bit_identical(state, runs[1])
    assert (ck / "7.not-a-checkpoint" / "notes.txt").read_text() == "mine"
    assert (ck / "runs-notes").is_dir()


def test_a_directory_holding_only_a_stray_starts_afresh(runs, tmp_path):
    (tmp_path / "ck" / "3").mkdir(parents=True)
    with pytest.warns(CheckpointWarning, match=r"ignoring .*/3: named like a step"):
        state, history = continue_to(tmp_path / "ck", start=fresh())
    assert history.resumed_from is None
    assert_bit_identical(state, runs[1])


def test_leftover_of_a_killed_save_is_removed_silently(runs, ck):
    shutil.copytree(ck / "4", ck / ".6.saving")  # as a save killed before its commit leaves
    truncate_data(ck / ".6.saving")
    state, history = continue_to(ck)  # warnings are errors here: none is given
    assert history.resumed_from == 4 and not (ck / ".6.saving").exists()
    assert_bit_identical(state, runs[1])


@pytest.mark.parametrize(
    "optimizer, expected",
    [
        (
            clipped(optax.adam(3e-3)),
            r"different optimizer or different hyperparameters .* update norms",
        ),
        (clipped(optax.nadam(1e-2)), r"different optimizer or different hyperparameters"),
        (
            clipped(optax.adamw(1e-2)),
            r"whose state is \(EmptyState\(\), \(ScaleByAdamState\(.*\), EmptyState\(\)\)\), "
            r"but the optimizer now has state \(EmptyState\(\), \(ScaleByAdamState.*"
            r"EmptyState\(\), Empty",
        ),
    ],
    ids=["adam-other-lr", "nadam", "adamw"],
)
def test_resuming_with_another_optimizer_is_refused(ck, optimizer, expected):
    # As after editing the one `optimizer = ...` line that the state and fit both use.
    with pytest.raises(OptimizerMismatchError, match=expected) as info:
        continue_to(ck, optimizer=optimizer)
    assert f"checkpoint {ck / '4'} was written" in str(info.value)
    assert "use a new checkpoint directory" in str(info.value)
    assert sorted(p.name for p in ck.iterdir()) == [".lstmjax.lock", "2", "4"]


def test_sgd_at_another_learning_rate_same_state_is_refused(tmp_path):
    # sgd's state is two EmptyStates whatever the rate: only the probe can tell.
    state = fresh(optimizer=optax.sgd(0.1))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(state, optimizer=optimizer_identity(state.opt_state, optax.sgd(0.1), None,
                                                      state.params))  # fmt: skip
        same = optimizer_identity(state.opt_state, optax.sgd(0.1), None, state.params)
        assert ckpt.restore(state, optimizer=same).compared == (
            "state structure",
            "probe of its updates",
        )
        other = optimizer_identity(state.opt_state, optax.sgd(0.05), None, state.params)
        with pytest.raises(OptimizerMismatchError, match=r"first update 0\.5 times the stored"):
            ckpt.restore(state, optimizer=other)


def test_a_user_fingerprint_is_compared_verbatim(ck):
    continue_to(ck, num_steps=6, fingerprint="adam 1e-2, my data v1")
    with pytest.raises(OptimizerMismatchError) as info:
        continue_to(ck, num_steps=8, fingerprint="adam 1e-2, my data v2")
    assert "'adam 1e-2, my data v1', but this run's is 'adam 1e-2, my data v2'" in str(info.value)
    # The advice names the way to continue, and it works.
    assert (
        "To continue the stored run, use the optimizer it was written with and "
        "Checkpointing(..., fingerprint='adam 1e-2, my data v1')."
    ) in str(info.value)
    _, history = continue_to(ck, num_steps=8, fingerprint="adam 1e-2, my data v1")
    assert history.resumed_from == 6 and [r["step"] for r in history.train] == [7, 8]


def test_resume_says_what_it_resumed_and_what_it_checked(ck, capsys):
    continue_to(ck, optimizer=None)
    err = capsys.readouterr().err
    assert f"fit: resumed from {ck / '4'} (step 4; optimizer checked: state structure; " in err
    assert "pass Checkpointing(optimizer=...) to check its hyperparameters too" in err


def test_num_steps_at_or_below_the_checkpoint(ck, capsys):
    with pytest.raises(ValueError, match=rf"checkpoint {ck / '4'} is at step 4, past num_steps=3"):
        continue_to(ck, num_steps=3)
    state, history = continue_to(ck, num_steps=4)
    assert history.train == [] and history.resumed_from == 4 and int(state.step) == 4
    assert "already at num_steps=4; nothing to train" in capsys.readouterr().err


def test_a_torn_last_line_of_the_metrics_log_is_repaired(ck):
    log = ck / "metrics.jsonl"
    records = [json.dumps({"kind": "train", "step": s, "loss": 1.0}) for s in range(1, 6)]
    log.write_text("\n".join(records) + '\n{"kind": "train", "step": 6, "lo')
    with pytest.warns(CheckpointWarning, match=rf"repaired metrics log {log}: its last line "):
        continue_to(ck, log_path=log)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    # A damaged line before the last is not guessed at.
    log.write_text(records[0] + "\n{oops\n" + records[1] + "\n")
    with pytest.raises(ValueError, match=rf"metrics log {log}, line 2, is not JSON"):
        continue_to(ck, num_steps=8, log_path=log)


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    with Checkpointer(tmp_path):
        with pytest.raises(CheckpointLockedError, match=rf"pid {os.getpid()} on host"):
            Checkpointer(tmp_path)
        assert checkpoint.latest_step(tmp_path) is None  # readers are welcome
    with Checkpointer(tmp_path):  # released on close: no takeover warning
        pass


@pytest.mark.integration  # a fresh interpreter killed or started mid-run
def test_a_second_writer_process_is_refused_and_a_dead_ones_lock_taken_over(tmp_path):
    ck = tmp_path / "ck"
    holder = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", "--ckpt", str(ck), "--steps", "1000",
         "--every", "2", "--delay", "0.05"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = holder.stdout.readline().split()
        assert line[:1] == ["TRAINING"], line
        pid = int(line[1])
        with pytest.raises(CheckpointLockedError) as info:
            continue_to(ck, num_steps=1000)
        assert str(info.value).startswith(
            f"checkpoint directory {ck} is in use by another writer (pid {pid} on host"
        )
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
    finally:
        holder.kill()
        holder.stdout.close()
    latest = checkpoint.latest_step(ck)
    assert latest is not None and latest >= 2
    with pytest.warns(CheckpointWarning, match=rf"taking over the lock of .* from pid {pid} "):
        state, history = continue_to(ck, num_steps=latest + 2)
    assert history.resumed_from == latest and int(state.step) == latest + 2
    # (Bit identity across processes is test_resume_kill.py's: the worker runs
    # without this suite's jax_enable_x64, which changes the batches.)


def test_a_diverged_run_keeps_its_checkpoints_and_the_next_run_resumes(runs, ck):
    def poisoned(step):  # a NaN in the batch of update 5 (not a save step)
        xs, ys = BATCHES(step)
        return (xs.at[0, 0, 0].set(np.nan), ys) if step == 5 else (xs, ys)

    with pytest.raises(train.TrainingDiverged, match="diverged at step 5") as info:
        train.fit(
            STEP,
            fresh(seed=5),
            poisoned,
            6,
            logging=train.Logging(quiet=True),
            checkpointing=train.Checkpointing(ck, every=2, optimizer=OPT),
        )
    assert str(ck / "4") in str(info.value) and int(info.value.state.step) == 5
    with Checkpointer(ck, writer=False) as ckpt:
        assert ckpt.steps() == [2, 4]  # nothing lost, nothing non-finite written
    state, history = continue_to(ck)  # the lock was released; the good data resumes
    assert history.resumed_from == 4
    assert_bit_identical(state, runs[1])

"""Hostile multi-process starts and inputs, run as real jobs on 127.0.0.1 (integration tier).

Each test starts some processes of a job (`_dist_worker.py`, 1 device each)
and checks that what JAX alone would abort (SIGABRT) or train through
silently raises a clear error in every running process:

* a process whose process 0 never starts, and a process 0 whose peer never
  joins: `TimeoutError` within `initialization_timeout`, exit code 1, not a
  core dump;
* processes that hand in different numbers of local rows, or replicate
  different parameters: `ValueError` in every process, nothing trained.

The disk that fills during a save is a real one too: a subprocess limits its
file size (`RLIMIT_FSIZE`) between two saves.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_multiprocess import WORKER, free_port

pytestmark = pytest.mark.integration

INIT_TIMEOUT = 3  # seconds: initialization_timeout of the start-up tests


def start(tmp: Path, mode: str, nproc: int, ranks, *args: str) -> list[subprocess.Popen]:
    port, procs = free_port(), []
    for rank in ranks:
        command = [sys.executable, str(WORKER), mode, "--rank", str(rank), "--nproc", str(nproc),
                   "--port", str(port), "--devices", "1", *args]  # fmt: skip
        with (tmp / f"{mode}-{rank}.out").open("w") as out:
            with (tmp / f"{mode}-{rank}.err").open("w") as err:  # the child keeps its copies
                procs.append(subprocess.Popen(command, stdout=out, stderr=err, text=True))
    return procs


def finish(tmp: Path, mode: str, procs, ranks, timeout: float) -> list[tuple[int, str, str]]:
    """`(exit code, stdout, stderr)` per process; every process is killed at the end."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    return [
        (
            proc.returncode,
            (tmp / f"{mode}-{r}.out").read_text(),
            (tmp / f"{mode}-{r}.err").read_text(),
        )
        for proc, r in zip(procs, ranks, strict=True)
    ]


def test_a_process_whose_coordinator_never_starts_raises(tmp_path):
    procs = start(tmp_path, "start", 2, [1], "--init-timeout", str(INIT_TIMEOUT))
    [(code, out, err)] = finish(tmp_path, "start", procs, [1], timeout=300)
    assert code == 1, (code, err[-2000:])  # a Python exception, not SIGABRT (-6)
    assert "STARTED" not in out
    assert "TimeoutError: initialize: process 1 could not reach process 0 at 127.0.0.1:" in err
    assert "Terminating process" not in err  # JAX's fatal handler never ran


def test_a_coordinator_whose_peer_never_joins_raises(tmp_path):
    procs = start(tmp_path, "start", 2, [0], "--init-timeout", str(INIT_TIMEOUT))
    [(code, out, err)] = finish(tmp_path, "start", procs, [0], timeout=300)
    assert code == 1, (code, err[-2000:])
    assert "STARTED" not in out
    assert "TimeoutError: initialize: process [1] of 2 did not join 127.0.0.1:" in err
    assert "Terminating process" not in err


def test_a_whole_job_still_starts(tmp_path):
    procs = start(tmp_path, "start", 2, [0, 1], "--init-timeout", "60")
    results = finish(tmp_path, "start", procs, [0, 1], timeout=300)
    for code, out, err in results:
        assert code == 0 and "STARTED" in out, err[-2000:]


def test_unequal_local_batches_stop_every_process(tmp_path):
    procs = start(tmp_path, "unequal", 2, [0, 1], "--batch", "8", "--shards", "2")
    results = finish(tmp_path, "unequal", procs, [0, 1], timeout=240)
    for code, out, err in results:
        assert code == 1, err[-3000:]
        assert "TRAINED" not in out
        assert (
            "ValueError: shard_local_batch: the processes hand in different numbers of local "
            "rows (process 0: 4, process 1: 2)" in err
        ), err[-3000:]


def test_different_replicas_stop_every_process(tmp_path):
    procs = start(tmp_path, "replicas", 2, [0, 1])
    results = finish(tmp_path, "replicas", procs, [0, 1], timeout=240)
    for code, out, err in results:
        assert code == 1, err[-3000:]
        assert "PLACED" not in out
        assert "ValueError: place: the processes hold different values to replicate" in err


DISK_FULL = textwrap.dedent(
    """
    import resource, sys
    import jax, jax.numpy as jnp, optax
    from lstmjax import checkpoint, train

    state = train.init_state({"w": jax.random.normal(jax.random.key(0), (128, 128))},
                             optax.sgd(0.1))
    with checkpoint.Checkpointer(sys.argv[1]) as ckpt:
        ckpt.save(state._replace(step=jnp.asarray(1, jnp.int32)))
        # Files may now grow to 4 kB only: the next save's array data cannot be written.
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, resource.RLIM_INFINITY))
        try:
            ckpt.save(state._replace(step=jnp.asarray(2, jnp.int32)))
        except OSError as error:
            print("RAISED", type(error).__name__, error)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        print("RESTORED", ckpt.restore(state).step)
    """
)


def test_a_disk_that_fills_during_a_save(tmp_path):
    directory = tmp_path / "ckpt"
    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert (
        f"RAISED OSError [Errno 27] could not save checkpoint step 2 in {directory}: File too "
        "large" in out
    ), out
    assert f"the earlier checkpoints [1] in {directory} are intact" in out
    assert "RESTORED 1" in out
    assert sorted(p.name for p in directory.iterdir()) == [".lstmjax.lock", "1"]

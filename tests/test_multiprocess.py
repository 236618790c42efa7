"""Multi-process data parallel: N processes on 127.0.0.1 train as one job.

Each test starts the processes of one job (`_dist_worker.py`, one per rank,
each with forced host devices and gloo collectives), on a port found free
at run time, and kills every one of them at the end, even on failure; every
wait has a timeout.

Tolerances: the job reduces the gradient over devices and processes in
another order than one device does, so float32 results agree to rounding:
1e-6 on the parameters (entries of order 0.1-1.6) after 10 Adam steps.
Between the processes of one job, and between an interrupted and an
uninterrupted job, they are bit-identical.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# Multi-process training in fresh interpreters: the integration tier (`pytest -m integration`, run by CI as its
# second command), not the default run.
pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("_dist_worker.py")
STEPS = 10
HEARTBEAT_S = 3  # the heartbeat timeout the dead-peer test starts its job with


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Job:
    """The processes of one job; `with Job(...)` kills whatever is left at exit."""

    def __init__(self, tmp: Path, mode: str, nproc: int, *args: str, devices: int = 2):
        self.port, self.procs, self.logs = free_port(), [], []
        for rank in range(nproc):
            out = (tmp / f"{mode}-{rank}.out").open("w+")
            err = (tmp / f"{mode}-{rank}.err").open("w+")
            command = [sys.executable, str(WORKER), mode, "--rank", str(rank),
                       "--nproc", str(nproc), "--port", str(self.port),
                       "--devices", str(devices), *args]  # fmt: skip
            self.procs.append(subprocess.Popen(command, stdout=out, stderr=err, text=True))
            self.logs.append((out, err))

    def stdout(self, rank: int) -> str:
        return Path(self.logs[rank][0].name).read_text()

    def stderr(self, rank: int) -> str:
        return Path(self.logs[rank][1].name).read_text()

    def wait_for(self, rank: int, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout(rank):
            if time.monotonic() > deadline or self.procs[rank].poll() is not None:
                raise AssertionError(
                    f"rank {rank} never printed {text!r}: {self.stderr(rank)[-2000:]}"
                )
            time.sleep(0.1)

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        return [proc.returncode for proc in self.procs]

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=30)
        for out, err in self.logs:
            out.close()
            err.close()

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def train_args(tmp: Path, name: str, *extra: str) -> list[str]:
    return ["--steps", str(STEPS), "--ckpt", str(tmp / f"{name}-ckpt"),
            "--log", str(tmp / f"{name}.jsonl"), "--out", str(tmp / name), *extra]  # fmt: skip


def load(tmp: Path, name: str, rank) -> dict:
    with np.load(tmp / f"{name}-{rank}.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """An uninterrupted 2-process job (2 devices each), with its single-device reference."""
    tmp = tmp_path_factory.mktemp("mp2")
    with Job(tmp, "train", 2, *train_args(tmp, "run", "--reference")) as job:
        codes = job.wait(timeout=240)
        assert codes == [0, 0], (job.stderr(0)[-3000:], job.stderr(1)[-3000:])
        stderr = [job.stderr(0), job.stderr(1)]
    return tmp, stderr


def test_two_processes_equal_one_device_on_the_same_global_batch(two_process_run):
    tmp, stderr = two_process_run
    info = [json.loads((tmp / f"run-{r}.json").read_text()) for r in (0, 1)]
    for rank, i in enumerate(info):
        assert (i["rank"], i["process_count"], i["global_devices"], i["local_devices"]) == (
            rank,
            2,
            4,
            2,
        )
        assert i["mesh_size"] == 4
        assert i["local_rows"] == [8] * STEPS  # each process built half of the 16 rows only
    ranks = [load(tmp, "run", r) for r in (0, 1)]
    reference = load(tmp, "run", "reference")
    assert sorted(reference) == sorted(ranks[0]) and len(reference) == 5
    for name, ref in reference.items():
        assert ranks[0][name].dtype == np.float32
        assert np.array_equal(ranks[0][name], ranks[1][name]), name  # replicas agree exactly
        np.testing.assert_allclose(ranks[0][name], ref, rtol=1e-6, atol=1e-6, err_msg=name)
    losses, ref_losses = np.array(info[0]["losses"]), np.array(info[0]["reference_losses"])
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    assert losses[-1] < losses[0]  # it trained, so the comparison is not vacuous
    # Only process 0 wrote the metrics log (one record per step, not two) and drew the bar.
    records = (tmp / "run.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == list(range(1, STEPS + 1))
    assert "steps/s" in stderr[0] and "steps/s" not in stderr[1]
    # One checkpoint directory for the whole job, holding the last two steps.
    steps = sorted(p.name for p in (tmp / "run-ckpt").iterdir() if p.name.isdigit())
    assert steps == ["10", "9"]


def test_kill_all_and_restart_ends_bit_identical(two_process_run, tmp_path):
    reference_tmp, _ = two_process_run
    args = train_args(tmp_path, "run")
    with Job(tmp_path, "train", 2, *args, "--delay", "0.2") as job:
        job.wait_for(0, "SAVED 6", timeout=240)
        for proc in job.procs:
            proc.send_signal(signal.SIGKILL)
        codes = job.wait(timeout=30)
    assert codes == [-signal.SIGKILL] * 2
    assert not (tmp_path / "run-0.npz").exists()  # it really died before the end
    with Job(tmp_path, "train", 2, *args) as job:
        codes = job.wait(timeout=240)
        assert codes == [0, 0], (job.stderr(0)[-3000:], job.stderr(1)[-3000:])
    info = json.loads((tmp_path / "run-0.json").read_text())
    assert 7 <= info["first_step"] <= STEPS  # it resumed from a checkpoint at 6 or later
    uninterrupted = load(reference_tmp, "run", 0)
    for rank in (0, 1):
        resumed = load(tmp_path, "run", rank)
        for name, ref in uninterrupted.items():
            assert np.array_equal(resumed[name], ref), (rank, name)


def test_a_dead_peer_stops_the_others_within_the_heartbeat_timeout(tmp_path):
    # Process 1 is killed mid-training; process 0 (the coordinator) stops missing its
    # heartbeats after HEARTBEAT_S and aborts with a message naming the dead task.
    with Job(tmp_path, "dead", 2, "--heartbeat", str(HEARTBEAT_S)) as job:
        job.wait_for(1, "STEPPING", timeout=240)
        killed = time.monotonic()
        job.procs[1].send_signal(signal.SIGKILL)
        code = job.procs[0].wait(timeout=HEARTBEAT_S + 30)
        took = time.monotonic() - killed
        message = job.stderr(0)
    assert code != 0
    assert took < HEARTBEAT_S + 10, took
    assert "stopped sending heartbeats" in message and "Terminating process" in message


@pytest.mark.slow  # about a minute on 2 cores: four processes start and compile
def test_four_processes_of_one_device_equal_one_device(two_process_run, tmp_path):
    # keyed_shards gives the same global batch for any process count dividing its
    # 4 shards, so the 2-process job's single-device reference serves here too.
    with Job(tmp_path, "train", 4, *train_args(tmp_path, "run"), devices=1) as job:
        codes = job.wait(timeout=300)
        assert codes == [0] * 4, [job.stderr(r)[-2000:] for r in range(4)]
    reference = load(two_process_run[0], "run", "reference")
    ranks = [load(tmp_path, "run", r) for r in range(4)]
    for name, ref in reference.items():
        for other in ranks[1:]:
            assert np.array_equal(ranks[0][name], other[name]), name
        np.testing.assert_allclose(ranks[0][name], ref, rtol=1e-6, atol=1e-6, err_msg=name)
    info = json.loads((tmp_path / "run-3.json").read_text())
    assert info["global_devices"] == 4 and info["local_rows"] == [4] * STEPS

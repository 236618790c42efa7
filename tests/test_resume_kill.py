"""Kill a training process with SIGKILL mid-run, resume it, and get bit-identical parameters.

Two subprocesses run `_train_worker.py fit` (adding problem, LSTM, Adam with
clipping, a checkpoint every 5 steps, 40 steps in all):
1. the first is killed as soon as it reports its second checkpoint, while it
   is still training;
2. the second resumes from the newest checkpoint to the end, then runs the
   same training uninterrupted from scratch in another directory.
The final parameters of 2's two runs must agree bit for bit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from _train_worker import flat_params, tiny_lstm_regressor

# Kill/restart runs in fresh interpreters: the integration tier (`pytest -m integration`, run by CI as its
# second command), not the default run.
pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("_train_worker.py")
STEPS, EVERY = 40, 5


def worker(*args: str) -> list[str]:
    return [sys.executable, str(WORKER), "fit", "--steps", str(STEPS), "--every", str(EVERY), *args]


def run_until_killed(ckpt: Path, out: Path) -> list[str]:
    """Start a slow run; SIGKILL it right after its second save. Returns its stdout lines."""
    lines = []
    with subprocess.Popen(
        worker("--ckpt", str(ckpt), "--out", str(out), "--delay", "0.1"),
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            for line in proc.stdout:
                lines.append(line.strip())
                if len(lines) == 2:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, lines)
    return lines


def test_killed_run_resumes_to_bit_identical_params(tmp_path):
    ckpt, out = tmp_path / "run", tmp_path / "resumed.npz"
    lines = run_until_killed(ckpt, out)
    assert lines == [f"SAVED {EVERY}", f"SAVED {2 * EVERY}"]
    assert not out.exists()  # it really died before the end

    done = subprocess.run(
        worker(
            "--ckpt", str(ckpt), "--out", str(out),
            "--reference-ckpt", str(tmp_path / "reference"),
            "--reference-out", str(tmp_path / "reference.npz"),
        ),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = [int(line.split()[1]) for line in done.stdout.split("\n") if line.startswith("SAVED")]
    # It resumed after step 10 (or later, had the kill come after a further save).
    assert saved and saved[0] > 2 * EVERY and saved[-1] == STEPS, done.stdout

    resumed, reference = np.load(out), np.load(tmp_path / "reference.npz")
    assert sorted(resumed.files) == sorted(reference.files) and len(resumed.files) == 5
    for name in reference.files:
        assert resumed[name].dtype == np.float32
        assert np.array_equal(resumed[name], reference[name]), name
    # Training did move every parameter array, so the comparison is not vacuous.
    init, _ = tiny_lstm_regressor()
    for name, x in flat_params(init(jax.random.key(0))).items():
        assert not np.array_equal(reference[name], x), name

"""The training experiments (long_range_memory, char_lm, dynamical_system) in --quick mode.

long_range_memory and char_lm train the min cells (minGRU, minLSTM) beside the RNN, LSTM and GRU.

Each script runs in this process with `main(["--quick", "--out", tmp])`; its
JSON is checked against what quick mode can reach (stated at each check),
partly against independent references (parameter counts by formula, an RK4
error recomputed in NumPy), and its figure is checked to be a non-empty PNG.
The full-mode anchors (adding MSE < 0.01 at T = 100, gated cells below the
RNN in bits/char, Lorenz growth rate ~0.9) need the full budgets and are
checked by running the scripts, not here.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

# Experiments in quick mode, end to end: the integration tier (`pytest -m integration`, run by CI as its
# second command), not the default run.
pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load(name: str):
    """Import `experiments/<name>.py` (on pytest's pythonpath, as `pyproject.toml` sets)."""
    return importlib.import_module(name)


def run_quick(name: str, out: Path) -> dict:
    module = load(name)
    result = module.main(["--quick", "--out", str(out)])
    on_disk = json.loads((out / f"{name}.json").read_text())
    assert on_disk == result  # what main returns is what it wrote
    assert on_disk["quick"] is True and on_disk["seed"] == 0 and on_disk["config"]
    for figure in on_disk["figures"]:
        data = (out / figure).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, figure
    report = module.report(on_disk)  # what run_all.py calls
    assert report.anchors == on_disk["anchors"]
    assert [f for f, _ in report.findings] == on_disk["figures"]
    for row in on_disk["anchors"]:
        assert set(row) >= {"anchor", "expected", "measured", "pass"}
    return on_disk


@pytest.fixture(scope="module")
def long_range(tmp_path_factory):
    return run_quick("long_range_memory", tmp_path_factory.mktemp("long_range_memory"))


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    return run_quick("char_lm", tmp_path_factory.mktemp("char_lm"))


@pytest.fixture(scope="module")
def dynamics(tmp_path_factory):
    return run_quick("dynamical_system", tmp_path_factory.mktemp("dynamical_system"))


# ---------------------------------------------------------------------------
# long_range_memory: quick mode trains 600 steps on adding T = 25 and copy T = 10
# ---------------------------------------------------------------------------


def test_long_range_baselines_are_the_tasks(long_range):
    res = long_range["results"]
    assert list(res["adding"]) == ["25"] and list(res["copy"]) == ["10"]
    assert res["adding"]["25"]["baseline"] == pytest.approx(1.0 / 6.0)
    assert res["copy"]["10"]["baseline"] == pytest.approx(10 * math.log(8) / 30)


def test_long_range_gated_cells_beat_the_adding_baseline(long_range):
    # Reachable in 600 steps at T = 25: the gated cells learn the sum
    # (measured ~1e-3); half the baseline leaves a wide margin.
    setting = long_range["results"]["adding"]["25"]
    for label in ("lstm", "gru"):
        r = setting["cells"][label]
        assert r["final_test_loss"] < 0.5 * setting["baseline"], label
        assert len(r["step"]) == len(r["test_loss"]) == len(r["train_loss"])


def test_long_range_gated_cells_beat_the_copy_baseline(long_range):
    # Copy with delay 10 in 600 steps: the gated cells get below the
    # memoryless strategy; the recall accuracy must then beat chance (1/8).
    setting = long_range["results"]["copy"]["10"]
    for label in ("lstm", "gru"):
        r = setting["cells"][label]
        assert r["final_test_loss"] < setting["baseline"], label
        assert r["recall_accuracy"] > 1.0 / 8.0, label


def test_long_range_min_cells_beat_both_baselines(long_range):
    # minGRU and minLSTM (gates from x_t alone) run in quick mode beside the others. Measured
    # at seed 0: adding T = 25 MSE ~0.008 (a tenth of the bar below), copy T = 10 ~0.59 nats
    # (baseline 0.693) with recall accuracy ~0.28 (chance 1/8).
    adding, copy = long_range["results"]["adding"]["25"], long_range["results"]["copy"]["10"]
    for label in ("min_gru", "min_lstm"):
        r = adding["cells"][label]
        assert all(math.isfinite(v) for v in r["train_loss"] + r["test_loss"]), label
        assert r["final_test_loss"] < 0.5 * adding["baseline"], label
        r = copy["cells"][label]
        assert r["final_test_loss"] < copy["baseline"], label
        assert r["recall_accuracy"] > 1.0 / 8.0, label


# ---------------------------------------------------------------------------
# char_lm: quick mode trains tiny models for 200 TBPTT updates on 120k chars
# ---------------------------------------------------------------------------


def formula_count(label: str, hidden: int, vocab: int, embed: int) -> int:
    """Parameters of embedding + one recurrent layer + readout, written out by hand."""
    recurrent = {
        "rnn": embed * hidden + hidden * hidden + hidden,
        "lstm": 4 * (embed * hidden + hidden * hidden + hidden),
        "gru": 3 * (embed * hidden + hidden * hidden + hidden) + hidden,  # + b_hn
        "min_gru": 2 * (embed * hidden + hidden),  # no recurrent weights: gates see x_t only
        "min_lstm": 3 * (embed * hidden + hidden),
    }[label]
    return vocab * embed + recurrent + hidden * vocab + vocab


def test_char_lm_parameter_counts_match(char_lm):
    sizes, vocab, embed = char_lm["sizes"], char_lm["vocab_size"], char_lm["config"]["embed"]
    for label, s in sizes.items():
        assert s["parameters"] == formula_count(label, s["hidden"], vocab, embed), label
    assert set(sizes) == {"rnn", "lstm", "gru", "min_gru", "min_lstm"}
    counts = [s["parameters"] for s in sizes.values()]
    assert max(counts) / min(counts) < 1.03  # "matched within a few percent"
    # Without recurrent weights, the min cells buy a wider state than the LSTM's for the count.
    assert sizes["min_gru"]["hidden"] > sizes["lstm"]["hidden"]
    assert sizes["min_lstm"]["hidden"] > sizes["lstm"]["hidden"]


def test_char_lm_learns_below_the_unigram_baseline(char_lm):
    # 200 updates suffice to beat the unigram entropy (~4.7 bits) by a margin
    # (measured ~3.2-3.5); gated-below-RNN needs the full run's budget.
    for label, r in char_lm["runs"].items():
        assert r["final_valid_bpc"] < char_lm["unigram_bpc"] - 0.5, label
        assert r["valid_bpc"][-1] < r["valid_bpc"][0], label


def test_char_lm_samples(char_lm):
    cfg = char_lm["config"]
    for label, r in char_lm["runs"].items():
        assert sorted(r["samples"]) == sorted(str(t) for t in cfg["temperatures"]), label
        for text in r["samples"].values():
            assert isinstance(text, str) and len(text) == cfg["sample_chars"]


# ---------------------------------------------------------------------------
# dynamical_system: RK4 order, and RNN/LSTM predictors trained 400 steps
# ---------------------------------------------------------------------------


def numpy_rk4_oscillator(dt: float, n: int) -> np.ndarray:
    """An independent RK4 for y'' = -y, in NumPy."""
    a = np.array([[0.0, 1.0], [-1.0, 0.0]])
    y = np.array([1.0, 0.0])
    for _ in range(n):
        k1 = a @ y
        k2 = a @ (y + dt / 2 * k1)
        k3 = a @ (y + dt / 2 * k2)
        k4 = a @ (y + dt * k3)
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def test_rk4_order(dynamics):
    order = dynamics["rk4_order"]
    for name in ("oscillator", "pendulum"):
        assert 3.5 <= order[f"{name}_slope"] <= 4.5, name
    # The coarsest oscillator error, recomputed independently (1e-10 relative).
    n, t_end = dynamics["config"]["rk4_steps"][0], order["t_end"]
    exact = np.array([np.cos(t_end), -np.sin(t_end)])
    mine = np.linalg.norm(numpy_rk4_oscillator(t_end / n, n) - exact)
    assert order["oscillator_error"][0] == pytest.approx(mine, rel=1e-10)


def test_one_step_error_beats_persistence(dynamics):
    # Reachable in 400 steps: each predictor is far below the no-change
    # forecast on both systems (measured ratios well above 10).
    for system, per_cell in dynamics["systems"].items():
        for label, r in per_cell.items():
            assert r["one_step_mse"] < r["persistence_mse"] / 10, (system, label)
            assert r["ratio"] == pytest.approx(r["persistence_mse"] / r["one_step_mse"])


def test_lorenz_divergence_of_true_trajectories(dynamics):
    # Needs no training: two RK4 trajectories 1e-6 apart separate at about
    # the largest Lyapunov exponent, 0.906 (a finite-time average, hence the band).
    assert 0.6 <= dynamics["true_divergence"]["rate"] <= 1.2


def test_rollout_error_grows_for_lorenz(dynamics):
    # Closed-loop errors on the chaotic system must grow from their start.
    for label, r in dynamics["systems"]["lorenz"].items():
        log_err = np.asarray(r["mean_log_error"])
        assert log_err[-1] > log_err[0] + 2.0, label
        assert math.isfinite(r["growth"]["rate"]) and r["growth"]["rate"] > 0, label

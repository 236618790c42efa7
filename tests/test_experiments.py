"""Every experiment in --quick mode, in process, with its JSON checked.

Each experiment's `main([...])` runs once into a shared temporary folder (a
cached fixture); the tests then read the JSON it wrote and check what quick
mode can reach, recomputing each claim from the plotted numbers with an
independent formula where there is one. Figures must be real PNG files of
a readable size. `run_all` then builds REPORT.md from those JSON files.
"""

import importlib
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

# Experiments in quick mode, end to end: the integration tier (`pytest -m integration`, run by CI as its
# second command), not the default run.
pytestmark = pytest.mark.integration

# experiments/ is on pytest's pythonpath (pyproject.toml): the scripts and their
# `_common` import as they do when run as `python experiments/<name>.py`.

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The experiments tested here; the others (long_range_memory, char_lm,
# dynamical_system) have their own test module.
MINE = [
    "vanishing_gradients",
    "exploding_gradients",
    "gradient_clipping",
    "perceptron_mlp",
    "activations",
]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


_results: dict = {}


def run_quick(name: str, out: Path) -> dict:
    """Run `experiments/<name>.py --quick` once; return the JSON it wrote (read from disk)."""
    if name not in _results:
        returned = importlib.import_module(name).main(["--quick", "--out", str(out)])
        on_disk = json.loads((out / f"{name}.json").read_text())
        assert on_disk == returned
        _results[name] = on_disk
    return _results[name]


def check_common(result: dict, name: str, out: Path) -> None:
    """Config, seed, anchors and figures present; figures are non-empty PNGs."""
    assert result["name"] == name and result["quick"] is True
    assert isinstance(result["seed"], int) and isinstance(result["config"], dict)
    for row in result["anchors"]:
        assert {"anchor", "expected", "measured", "pass"} <= set(row)
    assert result["figures"]
    for figure in result["figures"]:
        data = (out / figure).read_bytes()
        assert data[:8] == PNG_MAGIC, f"{figure} is not a PNG"
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
        assert width >= 400 and height >= 300 and len(data) > 20_000, (figure, width, height)


def failed(result: dict) -> list[str]:
    return [row["anchor"] for row in result["anchors"] if not row["pass"]]


def test_activations(out):
    r = run_quick("activations", out)
    check_common(r, "activations", out)
    x = np.asarray(r["x"])
    f = r["functions"]
    # Closed forms, independent of the script's autodiff.
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(f["tanh"]["value"], np.tanh(x), atol=1e-6)
    np.testing.assert_allclose(f["sigmoid"]["derivative"], sig * (1 - sig), atol=1e-6)
    np.testing.assert_allclose(f["relu"]["derivative"], (x > 0).astype(float))
    assert f["sigmoid"]["max_derivative"] == pytest.approx(0.25, abs=1e-7)
    assert f["sigmoid"]["argmax_derivative"] == pytest.approx(0.0, abs=1e-9)
    k = np.asarray(r["k"])
    np.testing.assert_allclose(r["products"]["sigmoid: 0.25^k"], 0.25**k, rtol=1e-5)
    assert not failed(r)


def test_perceptron_mlp(out):
    r = run_quick("perceptron_mlp", out)
    check_common(r, "perceptron_mlp", out)
    acc = {name: v["accuracy"] for name, v in r["results"].items()}
    # Reached in quick mode: the perceptron rule converges on the separable set
    # (no mistakes in its last epoch), no line solves XOR, the MLP does.
    assert r["results"]["separable"]["perceptron_mistakes_per_epoch"][-1] == 0
    assert acc["separable"]["perceptron_step"] == 1.0
    assert max(acc["xor"]["perceptron_step"], acc["xor"]["perceptron_sigmoid"]) <= 0.8
    assert acc["xor"]["mlp"] >= 0.99
    assert r["step_gradient_max_abs"] == 0.0
    y = np.asarray(r["data"]["xor"]["y"])
    x = np.asarray(r["data"]["xor"]["x"])
    np.testing.assert_array_equal(y, np.round(x[:, 0]) != np.round(x[:, 1]))  # XOR labels
    assert not failed(r)


def test_exploding_gradients(out):
    r = run_quick("exploding_gradients", out)
    check_common(r, "exploding_gradients", out)
    k = np.asarray(r["k"])
    assert sorted(float(rho) for rho in r["results"]["linear"]) == [0.5, 0.9, 1.0, 1.1, 1.5]
    for rho, lin in r["results"]["linear"].items():
        # The linear RNN's norm is rho^k (hand formula), to 1e-4 relative.
        np.testing.assert_allclose(lin["norm_min"], float(rho) ** k, rtol=1e-4)
        np.testing.assert_allclose(lin["norm_max"], float(rho) ** k, rtol=1e-4)
        for act, slope in (("tanh", 1.0), ("sigmoid", 0.25)):
            res = r["results"][act][rho]
            assert res["lambda_1"] == pytest.approx(float(rho), rel=1e-12)
            bound = (slope * res["lambda_1"]) ** k
            assert np.all(np.asarray(res["norm_max"]) <= bound * (1 + 1e-9)), (act, rho)
    assert not failed(r)


def test_vanishing_gradients(out):
    r = run_quick("vanishing_gradients", out)
    check_common(r, "vanishing_gradients", out)
    cfg = r["config"]
    assert cfg["steps"] >= 100 and cfg["hidden"] == 64 and cfg["inputs"] == 64
    curves = r["curves"]
    for label in ("rnn", "lstm", "lstm_forget_bias_0", "gru"):
        c = curves[label]
        assert c["distance"] == list(range(cfg["steps"]))
        assert len(c["grad_norm"]) == cfg["steps"] and min(c["grad_norm"]) > 0
    rel = {label: c["grad_norm"][100] / c["grad_norm"][0] for label, c in curves.items()}
    # The initialisation anchors hold in quick mode too (same setting, smaller batch).
    assert rel["rnn"] < 1e-15
    assert rel["lstm"] / rel["rnn"] >= 1e6
    assert 1e-3 <= rel["lstm_forget_bias_0"] / rel["rnn"] <= 1e3
    lstm = curves["lstm"]
    combined = np.hypot(lstm["grad_norm_h"], lstm["grad_norm_c"])
    # The batch mean of sqrt(h^2 + c^2) is at least the norm of the two batch means.
    assert np.all(np.asarray(lstm["grad_norm"]) >= combined * (1 - 1e-12))
    # Seeds: each seed's own relative curve starts at 1, and the pooled curve (a
    # ratio of sums over equal batches) lies within the seeds' range at every k.
    seeds = cfg["seeds"]
    assert seeds >= 2
    for setting in ("curves", "curves_weak_inputs", "curves_trained"):
        for label, c in r[setting].items():
            per_seed = np.asarray(c["relative_seeds"])
            assert per_seed.shape == (seeds, cfg["steps"]), (setting, label)
            np.testing.assert_allclose(per_seed[:, 0], 1.0, rtol=1e-12)
            rel = np.asarray(c["relative"])
            assert np.all(rel >= per_seed.min(0) * (1 - 1e-9)), (setting, label)
            assert np.all(rel <= per_seed.max(0) * (1 + 1e-9)), (setting, label)
    # At rest (carry 0, input 0) the tanh RNN's step Jacobian is W_h, orthogonal:
    # every eigenvalue has modulus 1 (to rounding).
    assert r["explain"]["radius_at_rest"]["rnn"] == pytest.approx(1.0, abs=1e-9)
    # Training is only 40 steps in quick mode: no claim on its outcome, only that
    # it ran, stayed finite and produced a curve for each trained cell.
    for label, h in r["training"].items():
        assert math.isfinite(h["test_mse"]) and len(r["curves_trained"][label]["grad_norm"]) > 0
        assert np.asarray(h["loss_seeds"]).shape == (seeds, len(h["step"]))
        assert h["test_mse"] == pytest.approx(float(np.median(h["test_mse_seeds"])))
    assert not failed(r)


def test_gradient_clipping(out):
    r = run_quick("gradient_clipping", out)
    check_common(r, "gradient_clipping", out)
    un, cl = r["wall"]["paths"]["unclipped"], r["wall"]["paths"]["clipped"]
    clip, lr = r["config"]["surface"]["clip"], r["config"]["surface"]["lr"]
    # A clipped step is at most lr * clip long; the unclipped path meets the wall.
    steps = np.hypot(np.diff(cl["w"]), np.diff(cl["b"]))
    assert np.all(steps <= lr * clip * (1 + 1e-9))
    assert max(un["grad_norm"]) >= 100 * un["grad_norm"][0]
    seeds, n = r["config"]["seeds"], r["config"]["train_steps"]
    for run in r["training"].values():
        assert np.asarray(run["loss"]).shape == (seeds, n)
        assert np.all(np.isfinite(run["grad_norm"]))
        assert run["success_rate"] == np.mean(
            np.asarray(run["test_accuracy"]) >= r["config"]["success_accuracy"]
        )
    # Quick mode (T = 20, 100 steps) already separates the two: clipped runs
    # succeed at least as often as unclipped ones.
    assert r["training"]["clipped"]["success_rate"] >= r["training"]["unclipped"]["success_rate"]
    assert not failed(r)


def test_run_all_writes_report(out):
    run_all = importlib.import_module("run_all")
    assert set(MINE) <= set(run_all.EXPERIMENTS)
    for name in MINE:
        run_quick(name, out)
    # Rerun one experiment through run_all itself, then build the report from all
    # the JSON in the folder (the experiments not run here are listed as missing).
    report = run_all.main(["--quick", "--out", str(out), "--only", "activations"])
    assert (out / "REPORT.md").read_text() == report
    for name in MINE:
        result = json.loads((out / f"{name}.json").read_text())
        for figure in result["figures"]:
            assert f"]({figure})" in report and (out / figure).exists()
        for row in result["anchors"]:
            assert row["anchor"].replace("|", "\\|") in report  # escaped in the table
    # Numbers are read from the JSON: the finding quotes the measured RNN ratio.
    vg = json.loads((out / "vanishing_gradients.json").read_text())
    assert run_all.fmt(vg["curves"]["rnn"]["relative"][100]) in report
    assert "**FAIL**" not in report
    total = sum(len(_results[name]["anchors"]) for name in MINE)
    assert f"{total} of {total} anchors reproduced" in report
    others = [name for name in run_all.EXPERIMENTS if name not in MINE]
    if others:
        assert f"Not run (no JSON in this folder): {', '.join(others)}." in report


def test_run_all_reports_a_failing_experiment(tmp_path, monkeypatch):
    run_all = importlib.import_module("run_all")
    monkeypatch.setattr(run_all, "EXPERIMENTS", ["broken_experiment"])
    (tmp_path / "broken_experiment.json").write_text("{}")  # stale output of an earlier run

    class Broken:
        @staticmethod
        def main(argv):
            raise RuntimeError("out of memory")

    monkeypatch.setitem(sys.modules, "broken_experiment", Broken)
    report = run_all.main(["--out", str(tmp_path)])
    assert "**The run failed**: `RuntimeError: out of memory`" in report
    assert not (tmp_path / "broken_experiment.json").exists()
    assert "0 of 0 anchors reproduced" in report


# ---------------------------------------------------------------------------
# The xLSTM experiments (issue 24): state tracking, associative recall, gradient flow
# ---------------------------------------------------------------------------


def lstm_parameters(hidden: int, inputs: int, outputs: int) -> int:
    """An LSTM (four gates) with a linear readout, by formula."""
    return 4 * hidden * (inputs + hidden + 1) + hidden * outputs + outputs


def test_state_tracking(out):
    r = run_quick("state_tracking", out)
    check_common(r, "state_tracking", out)
    cfg = r["config"]
    T, L, S = cfg["train_length"], cfg["test_length"], cfg["seeds"]
    assert list(r["results"]) == [str(m) for m in cfg["moduli"]]
    for m, runs in r["results"].items():
        assert list(runs) == cfg["cells"]
        for label, run in runs.items():
            acc = np.asarray(run["accuracy_seeds"])
            assert acc.shape == (S, L) and np.all((0 <= acc) & (acc <= 1)), label
            for factor, s in run["summary"].items():
                at = acc[:, int(factor) * T - 1]  # the prediction after factor x T tokens
                assert s["median"] == pytest.approx(float(np.median(at))), (label, factor)
            assert np.asarray(run["loss_seeds"]).shape == (S, len(run["step"]))
        # Parameter counts by formula: H = 32, m one-hot inputs, a readout to m classes.
        H, k = cfg["hidden"], int(m)
        assert runs["lstm"]["parameters"] == lstm_parameters(H, k, k)
        assert runs["min_gru"]["parameters"] == 2 * H * (k + 1) + H * k + k  # z and h~ from x
        assert runs["mlstm"]["parameters"] == (4 * H + 2 * 4) * (k + 1) + H * k + k  # 4 heads
        # sLSTM, 4 heads of 8 units: W_x, b and four 8 x 32 recurrent blocks.
        assert runs["slstm"]["parameters"] == 4 * H * (k + 1) + 4 * 8 * 32 + H * k + k
    # Quick mode (parity, 200 updates) already separates the two kinds of cell.
    assert not failed(r)


def test_associative_recall(out):
    r = run_quick("associative_recall", out)
    check_common(r, "associative_recall", out)
    cfg, sizes = r["config"], r["sizes"]
    vocab = cfg["num_keys"] + cfg["num_values"]
    # Inputs: the one-hot token and the one-hot token before it.
    assert sizes["lstm"]["parameters"] == lstm_parameters(cfg["lstm_hidden"], 2 * vocab, vocab)
    H = sizes["mlstm"]["hidden"]
    assert H % 4 == 0
    assert sizes["mlstm"]["parameters"] == (4 * H + 8) * (2 * vocab + 1) + H * vocab + vocab
    for label, s in sizes.items():  # equal parameter counts, to within 5%
        assert abs(s["parameters"] / sizes["lstm"]["parameters"] - 1) <= 0.05, label
    for n, runs in r["results"].items():
        for label, run in runs.items():
            acc = np.asarray(run["accuracy_seeds"])
            assert acc.shape == (cfg["seeds"],) and np.all((0 <= acc) & (acc <= 1))
            assert run["accuracy"] == pytest.approx(float(np.median(acc))), (n, label)
    # Quick mode (N = 4, 300 updates) already shows the contrast.
    assert not failed(r)


def test_xlstm_gradient_flow(out):
    r = run_quick("xlstm_gradient_flow", out)
    check_common(r, "xlstm_gradient_flow", out)
    cfg = r["config"]
    for setting in ("curves", "curves_weak_inputs"):
        for label, c in r[setting].items():
            per_seed = np.asarray(c["relative_seeds"])
            assert per_seed.shape == (cfg["seeds"], cfg["steps"]), (setting, label)
            np.testing.assert_allclose(per_seed[:, 0], 1.0, rtol=1e-12)
    # The same draws as the headline: its quick mode has the same sizes, so the cells
    # both draw have the same curves.
    vg = run_quick("vanishing_gradients", out)
    for label in ("rnn", "lstm", "gru"):
        np.testing.assert_allclose(
            r["curves"][label]["relative"], vg["curves"][label]["relative"], rtol=1e-10
        )
    # log sigmoid(1), by hand, and the mLSTM's exponent with weak inputs beside it.
    assert r["forget_rate_at_rest"] == pytest.approx(-math.log(1 + math.exp(-1)), rel=1e-12)
    rows = {row["anchor"]: row for row in r["anchors"]}
    assert rows["mLSTM, weak inputs: lambda_1 - log sigmoid(forget bias) (nats/step)"]["pass"]
    for label in ("sLSTM", "mLSTM"):
        key = f"{label}: largest |gradient slope - lambda_1| over the seeds (nats/step)"
        assert rows[key]["pass"]
    for lyap in r["lyapunov"].values():
        assert len(lyap["lambda_1"]) == cfg["seeds"]
        assert lyap["lambda_1_mean"] == pytest.approx(float(np.mean(lyap["lambda_1"])))

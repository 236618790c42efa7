"""The benchmark runs in its tiny mode and writes complete, well-formed results.

No timing is asserted (the machines are shared and noisy); what is checked
is that every implementation is either measured or reported as missing,
that the ratios are taken against lstmjax, and that the memory mode records
remat using less memory than plain BPTT.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import benchmark  # noqa: E402

LSTM_IMPLS = {
    "lstmjax",
    "floor (hand-written scan)",
    "flax.LSTMCell",
    "flax.OptimizedLSTMCell",
    "equinox.LSTMCell",
    "haiku.LSTM",
    "torch.nn.LSTM",
    "torch.nn.LSTM (1 thread)",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(ROOT / "experiments" / "benchmark.py"), "--quick"]
    cmd += ["--cell", "lstm", "--config", "small", "--mode", "train,infer,memory"]
    cmd += ["--out", str(out)]
    # A fresh process: the benchmark runs as a user would run it, without
    # the test suite's float64 and rank-promotion settings.
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_speed_results_cover_every_implementation(quick_run):
    doc = json.loads((quick_run / "benchmark.json").read_text())
    assert doc["quick"] is True
    assert doc["machine"]["cpus_available"] >= 1
    for mode in ("train", "infer"):
        rows = {r["impl"]: r for r in doc["results"] if r["mode"] == mode}
        assert set(rows) == LSTM_IMPLS
        for name, row in rows.items():
            assert row["status"] == "ok" or row["status"].startswith("missing:"), (name, row)
        base = rows["lstmjax"]
        assert base["status"] == "ok"
        assert base["ratio_vs_lstmjax"] == 1.0
        for row in rows.values():
            if row["status"] == "ok":
                assert row["median_ms"] > 0 and row["gflops"] > 0 and row["roofline_gflops"] > 0
                assert row["ratio_vs_lstmjax"] == pytest.approx(
                    row["median_ms"] / base["median_ms"]
                )


def test_markdown_table_has_a_row_per_implementation(quick_run):
    text = (quick_run / "benchmark.md").read_text()
    _, every = text.split("## Every implementation")
    assert "| config | cell | mode | implementation | median ms |" in every
    for name in LSTM_IMPLS:
        assert every.count(f"| {name} |") == 2, name  # one train row, one infer row


def test_summary_names_the_fastest_jax_peer(quick_run):
    """One summary row per mode: the JAX peer (not lstmjax, not the floor) with the least min."""
    doc = json.loads((quick_run / "benchmark.json").read_text())
    summary = (quick_run / "benchmark.md").read_text().split("## Every implementation")[0]
    for mode in ("train", "infer"):
        rows = [r for r in doc["results"] if r["mode"] == mode and r["status"] == "ok"]
        peers = [r for r in rows if not r["impl"].startswith(("lstmjax", "floor", "torch"))]
        best = min(peers, key=lambda r: r["min_ms"])
        line = next(
            ln for ln in summary.splitlines() if ln.startswith(f"| small | lstm | {mode} |")
        )
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[5] == best["impl"]
        assert float(cells[6]) == pytest.approx(best["min_ratio_vs_lstmjax"], abs=0.006)


def test_memory_mode_writes_points_plot_and_table(quick_run):
    doc = json.loads((quick_run / "benchmark_memory.json").read_text())
    points = doc["points"]
    assert {(p["T"], p["remat"]) for p in points} == {
        (T, r) for T in benchmark.QUICK_MEMORY_TIMES for r in (False, True)
    }
    assert all(p["status"] == "ok" and p["temp_mb"] > 0 for p in points)
    by_key = {(p["T"], p["remat"]): p for p in points}
    longest = max(benchmark.QUICK_MEMORY_TIMES)
    assert by_key[longest, True]["temp_mb"] < by_key[longest, False]["temp_mb"]
    assert (quick_run / "benchmark_memory.png").stat().st_size > 1000
    assert "temp plain / remat" in (quick_run / "benchmark_memory.md").read_text()


def test_flop_count_matches_the_matmul_shapes():
    """Forward: x_t @ W_x and h @ W_h per step; training adds dW_x, dW_h and dh."""
    s = benchmark.Shape(batch=2, time=3, inputs=5, hidden=7)
    fwd_lstm = 3 * (2 * 2 * 5 * 28 + 2 * 2 * 7 * 28)
    assert benchmark.flops(s, "lstm", "infer") == fwd_lstm
    assert benchmark.flops(s, "lstm", "train") == 3 * (2 * 2 * 28 * (2 * 5 + 3 * 7))
    assert benchmark.flops(s, "rnn", "infer") == 3 * 2 * 2 * 7 * (5 + 7)


def test_bad_arguments_name_what_is_allowed(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse(["--cell", "lstm,transformer"])
    assert "unknown ['transformer']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.parse(["--variants", "fast"])
    assert "autodiff" in capsys.readouterr().err

"""The benchmark runs in its tiny mode and writes complete, honest results.

No timing is asserted (the machines are shared and noisy). What is checked:
every implementation is measured or reported missing with a reason; the
ratios are taken against lstmjax; each profile runs in its own environment
(the default one with every tuning variable removed); the machine state is
recorded and a busy machine gets no headline; the README's performance
block is exactly what the shipped JSON produces; memory mode records remat
using less memory than plain BPTT.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import _bench_env as env  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import _bench_memory as memory
import _bench_readme as readme
import _bench_report as report
import _bench_step as step
import benchmark
import pytest

# The benchmark harness, in subprocesses: the integration tier (`pytest -m integration`, run by CI as its
# second command), not the default run.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"

LSTM_IMPLS = {
    "lstmjax",
    "floor (hand-written scan)",
    "flax.LSTMCell",
    "flax.OptimizedLSTMCell",
    "equinox.LSTMCell",
    "haiku.LSTM",
    "torch.nn.LSTM",
    "torch.compile(torch.nn.LSTM)",
}


def run_benchmark(out: Path, *args: str) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "benchmark.py"), "--quick", *args]
    # A fresh process: the benchmark runs as a user would run it, without
    # the test suite's float64 and rank-promotion settings. A tuning variable
    # set here must not reach the default profile.
    proc = subprocess.run(
        [*cmd, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ | {"OMP_WAIT_POLICY": "ACTIVE"},
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Step mode with every LSTM peer (default profile); loop mode in two profiles."""
    out = tmp_path_factory.mktemp("bench")
    run_benchmark(out, "--cell", "lstm", "--config", "small", "--parts", "train,infer",
                  "--profiles", "default")  # fmt: skip
    run_benchmark(out, "--mode", "loop", "--profiles", "default,passive")
    return out


def test_speed_results_cover_every_implementation(quick_run):
    doc = json.loads((quick_run / "benchmark.json").read_text())
    assert doc["quick"] is True and doc["machine"]["cpus_available"] >= 1
    assert doc["removed_from_environment"] == {"OMP_WAIT_POLICY": "ACTIVE"}
    assert [w["profile"] for w in doc["workers"]] == ["default"]
    for mode in ("train", "infer"):
        rows = {r["impl"]: r for r in doc["results"] if r["mode"] == mode}
        assert set(rows) == LSTM_IMPLS
        for name, row in rows.items():
            assert row["status"] == "ok" or row["status"].startswith("missing: "), (name, row)
            assert row["profile"] == "default"
        base = rows["lstmjax"]
        assert base["status"] == "ok" and base["ratio_vs_lstmjax"] == 1.0
        for row in rows.values():
            if row["status"] == "ok":
                assert row["median_ms"] > 0 and row["gflops"] > 0
                assert row["ratio_vs_lstmjax"] == pytest.approx(
                    row["median_ms"] / base["median_ms"]
                )


def test_machine_state_is_recorded_and_judged(quick_run):
    for name in ("benchmark.json", "benchmark_loop.json"):
        doc = json.loads((quick_run / name).read_text())
        state, verdict = doc["state"], doc["verdict"]
        assert len(state["load_before"]) == 3 and len(state["load_after"]) == 3
        assert 0 <= state["other_cpu_share"] <= 1 and state["own_cpu_share"] > 0
        assert verdict["busy"] == (
            state["load_before"][0] > verdict["max_load"]
            or state["other_cpu_share"] > verdict["max_other_share"]
        )
        assert doc["machine"]["versions"]["jax"] and doc["machine"]["versions"]["torch"]


def test_each_profile_runs_in_its_own_environment(quick_run):
    doc = json.loads((quick_run / "benchmark_loop.json").read_text())
    assert [r["profile"] for r in doc["runs"]] == ["default", "passive"]
    for run in doc["runs"]:
        assert run["env_set"] == env.PROFILES[run["profile"]]
        # What the worker process saw: the caller's ACTIVE never reached it.
        assert run["omp_wait_policy"] == env.PROFILES[run["profile"]].get("OMP_WAIT_POLICY")


def test_markdown_has_every_row_and_the_loop_table(quick_run):
    text = (quick_run / "benchmark.md").read_text()
    _, every = text.split("### Every implementation")
    for name in LSTM_IMPLS:
        assert every.count(f"| {name} |") == 2, name  # train and infer
    loop = json.loads((quick_run / "benchmark_loop.json").read_text())
    for run in loop["runs"]:
        assert set(run["loops"]) == set(benchmark_loops())
        bare = run["loops"]["bare loop"]["min_ms"]
        assert run["fit_overhead_min"] == pytest.approx(run["loops"]["fit"]["min_ms"] / bare - 1)
        assert f"| {run['profile']} | fit |" in text.split("## Loop mode")[1]


def benchmark_loops():
    import _bench_loop

    return _bench_loop.LOOPS


def test_default_profile_removes_every_tuning_variable():
    base = {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE", "XLA_FLAGS": "--x", "HOME": "/h"}
    assert env.profile_env("default", base) == {"PATH": "/bin", "HOME": "/h"}
    assert env.profile_env("passive", base)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "XLA_FLAGS" not in env.profile_env("passive", base)
    assert env.removed_vars(base) == {"OMP_WAIT_POLICY": "PASSIVE", "XLA_FLAGS": "--x"}
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        env.profile_env("fast")


def test_busy_verdict_follows_the_limits():
    quiet = {"load_before": [1.4, 1, 1], "other_cpu_share": 0.2}
    assert not env.verdict(quiet, 2)["busy"]
    loaded = env.verdict(quiet | {"load_before": [1.6, 1, 1]}, 2)
    assert loaded["busy"] and "load 1.60" in loaded["reasons"][0]
    shared = env.verdict(quiet | {"other_cpu_share": 0.3}, 2)
    assert shared["busy"] and "30%" in shared["reasons"][0]


def shipped() -> tuple[dict, dict]:
    step_doc, loop_doc = report.load(RESULTS)
    assert step_doc is not None and loop_doc is not None, "ship benchmark*.json in docs/results"
    return step_doc, loop_doc


def test_readme_block_is_what_the_shipped_json_produces():
    text = (ROOT / "README.md").read_text()
    assert readme.extract(text) == readme.block(*shipped()).rstrip() + "\n"


def test_shipped_benchmark_md_is_what_the_shipped_json_produces():
    assert (RESULTS / "benchmark.md").read_text() == report.benchmark_markdown(*shipped())


def quiet_and_busy(doc: dict) -> tuple[dict, dict]:
    quiet, busy = copy.deepcopy(doc), copy.deepcopy(doc)
    quiet["quick"], quiet["verdict"]["busy"] = False, False
    busy["quick"] = False
    busy["verdict"] = env.verdict({**busy["state"], "load_before": [9.0] * 3}, 2)
    return quiet, busy


def test_headline_only_from_a_quiet_full_run():
    step_doc, loop_doc = shipped()
    quiet, busy = quiet_and_busy(step_doc)
    ours = next(r for r in quiet["results"] if r["impl"] == "lstmjax" and r["profile"] == "default")
    row = f"| {ours['config']} | {ours['cell']} | {ours['mode']} | {ours['min_ms']:.1f} |"
    text = readme.block(quiet, None)
    assert row in text and "No headline" not in text
    refused = readme.block(busy, None)
    assert row not in refused and "No headline table" in refused and "load 9.00" in refused
    quiet, busy = quiet_and_busy(loop_doc)
    fit = quiet["runs"][0]["loops"]["fit"]
    row = f"| default | fit | {fit['min_ms']:.2f} | {fit['median_ms']:.2f} |"
    assert row in readme.block(None, quiet) and "fit's overhead" in readme.block(None, quiet)
    assert row not in readme.block(None, busy)


def test_torch_findings_state_the_ratio_where_torch_wins():
    def row(impl, ms):
        return {"profile": "default", "config": "small", "cell": "lstm", "mode": "train",
                "impl": impl, "status": "ok", "min_ms": ms, "min_ratio_vs_lstmjax": ms / 20.0}  # fmt: skip

    lines = report.torch_findings([row("lstmjax", 20.0), row("torch.nn.LSTM", 10.0)])
    assert "PyTorch is faster" in lines[0] and "2.00x torch's time" in lines[0]
    lines = report.torch_findings([row("lstmjax", 20.0), row("torch.nn.LSTM", 40.0)])
    assert "lstmjax is faster" in lines[0] and "(2.00x)" in lines[0]


def test_parallel_mode_says_when_it_is_not_available(monkeypatch):
    monkeypatch.setitem(sys.modules, "_bench_parallel", None)  # as if the file were absent
    with pytest.raises(SystemExit, match="parallel mode is not available yet"):
        benchmark.main(["--mode", "parallel", "--quick"])


def test_memory_mode_writes_points_plot_and_table(tmp_path):
    longest = max(memory.QUICK_MEMORY_TIMES)
    points = [{"status": "ok"} | memory.memory_point(longest, r, reps=1) for r in (False, True)]
    plain, remat = points
    assert remat["temp_mb"] < plain["temp_mb"] and remat["remat"] and not plain["remat"]
    memory.memory_plot(points, tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000
    assert "temp plain / remat" in memory.memory_markdown(points)


def test_flop_count_matches_the_matmul_shapes():
    """Forward: x_t @ W_x and h @ W_h per step; training adds dW_x, dW_h and dh."""
    s = step.Shape(batch=2, time=3, inputs=5, hidden=7)
    fwd_lstm = 3 * (2 * 2 * 5 * 28 + 2 * 2 * 7 * 28)
    assert step.flops(s, "lstm", "infer") == fwd_lstm
    assert step.flops(s, "lstm", "train") == 3 * (2 * 2 * 28 * (2 * 5 + 3 * 7))
    assert step.flops(s, "rnn", "infer") == 3 * 2 * 2 * 7 * (5 + 7)


def test_bad_arguments_name_what_is_allowed(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse(["--cell", "lstm,transformer"])
    assert "unknown ['transformer']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.parse(["--variants", "fast"])
    assert "autodiff" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.parse(["--profiles", "turbo"])
    assert "1-thread" in capsys.readouterr().err


@pytest.fixture(scope="module")
def parallel_quick(tmp_path_factory):
    import _bench_parallel as parallel

    out = tmp_path_factory.mktemp("parallel") / "bench_parallel.json"
    result = parallel.main(["--quick", "--xlstm", "--out", str(out)])
    return result, out.with_suffix(".md").read_text()


def test_parallel_mode_measures_every_method_against_the_scan(parallel_quick):
    result, table = parallel_quick
    rows = {(r["cell"], r["method"]): r for r in result["rows"]}
    assert set(rows) == {("gru", m) for m in ("scan", "quasi_newton", "elk", "newton")} | {
        ("min_gru", m) for m in ("scan", "affine", "quasi_newton", "elk", "newton")
    }
    for (cell, method), r in rows.items():
        assert r["train_s"] > 0 and r["inference_s"] > 0
        assert (r["train_vs_scan"] == 1.0) == (method == "scan")
        # An affine step is solved exactly by one Newton-type iteration.
        if cell == "min_gru" and method in ("newton", "quasi_newton"):
            assert r["iterations"] == 1
    assert rows[("gru", "newton")]["iterations"] < rows[("gru", "quasi_newton")]["iterations"]
    target = result["min_cell_target"]
    assert target["gru_scan_over"]["gru/scan"] == 1.0 and "min_gru/auto" in target["train_s"]
    assert "| min_gru | 50 | affine |" in table and "GRU scan time / this" in table
    (xlstm,) = result["mlstm_target"]["rows"]  # --quick: T = 50 only
    assert xlstm["T"] == 50 and set(xlstm["seconds"]) == {"inference", "train"}
    for part, t in xlstm["seconds"].items():
        assert set(t) == {"mlstm/auto", "mlstm/scan", "lstm/scan"} and min(t.values()) > 0
        ratio = xlstm["ratios"][part]["mlstm_scan_over_parallel"]
        assert ratio == t["mlstm/scan"] / t["mlstm/auto"]
    assert "its parallel pass against the scans" in table and "| 50 | train |" in table


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_autodiff_variant_computes_what_unroll_computes(cell):
    """The `autodiff` variant's plain equations are the cell's: same outputs, same carry."""
    import _bench_peers as peers
    import jax
    import numpy as np

    import lstmjax as lj

    c = peers.lstmjax_cell(cell, 6)
    params = c.init(jax.random.PRNGKey(0), 4)
    xs = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 4), "float32")  # as the benchmark
    ys, carry = peers.autodiff_forward(cell, params, xs)
    ref_ys, ref_carry = lj.unroll(c, params, xs)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-6, atol=1e-6)
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(ref_carry), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

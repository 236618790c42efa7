"""Parallel-in-time benchmark: every method against the sequential scan, in one run.

For each cell and sequence length T: Newton-type iterations to converge at
initialisation, wall time of inference and of a training step (gradient of
a loss) as ratios against `method="scan"` timed in the same run, XLA's
peak temporary memory of the compiled training step, and the sequential
depth (loop trips: what decides accelerator speed).

    python benchmarks/_bench_parallel.py [--quick] [--lengths 100 1000 10000]
    python benchmarks/_bench_parallel.py --xlstm-only --merge FILE   # the mLSTM rows only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp

import lstmjax as lj

B, I, H = 16, 16, 64
CELLS = {"gru": lj.gru, "lstm": lj.lstm, "min_gru": lj.min_gru, "min_lstm": lj.min_lstm}
SOLVERS = ("quasi_newton", "elk", "newton")
REPEATS = 3


def log_depth(T: int) -> int:
    """Levels of an associative scan over T steps (up and down the tree)."""
    return 2 * max(1, math.ceil(math.log2(max(T, 2))))


def depth(method: str, T: int, iterations: int, algorithm: str) -> int:
    """Sequential loop trips (or scan levels) of one forward pass with `algorithm`.

    "sequential" (the CPU default): the affine pass takes T trips (in chunks),
    each solver iteration one T-trip scan (ELK: three, filter variances,
    means and smoother). "associative" (the accelerator default): log depth.
    """
    per_scan = T if algorithm == "sequential" else log_depth(T)
    if method == "scan":
        return T
    if method == "affine":
        return per_scan
    return iterations * (3 if method == "elk" else 1) * per_scan


def best_time(f, *args) -> float:
    jax.block_until_ready(f(*args))
    best = math.inf
    for _ in range(REPEATS):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t)
    return best


def peak_bytes(f, *args) -> int:
    analysis = f.lower(*args).compile().memory_analysis()
    return int(getattr(analysis, "temp_size_in_bytes", -1)) if analysis is not None else -1


def measure(name: str, T: int, methods) -> list[dict]:
    cell = CELLS[name](H)
    params = cell.init(jax.random.PRNGKey(0), I)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I))
    rows, base = [], {}
    for method in methods:
        infer = jax.jit(lambda p, x, m=method: lj.unroll(cell, p, x, method=m)[0])
        train = jax.jit(
            jax.grad(lambda p, x, m=method: jnp.mean(lj.unroll(cell, p, x, method=m)[0] ** 2))
        )
        try:
            t_inf, t_train = best_time(infer, params, xs), best_time(train, params, xs)
        except (ValueError, RuntimeError) as err:  # refused (memory) or not converged
            rows.append({"cell": name, "T": T, "method": method, "error": str(err)[:160]})
            continue
        iters = 0
        if method in SOLVERS:
            info = jax.jit(lambda p, x, m=method: lj.unroll_parallel(cell, p, x, method=m)[2])(
                params, xs
            )
            iters = int(info.iterations)
        if method == "scan":
            base = {"inference": t_inf, "train": t_train}
        rows.append(
            {
                "cell": name,
                "T": T,
                "method": method,
                "iterations": iters,
                "inference_s": t_inf,
                "train_s": t_train,
                "inference_vs_scan": t_inf / base["inference"] if base else None,
                "train_vs_scan": t_train / base["train"] if base else None,
                "train_temp_mb": peak_bytes(train, params, xs) / 2**20,
                "depth_cpu_default": depth(method, T, iters, "sequential"),
                "depth_associative": depth(method, T, iters, "associative"),
            }
        )
    return rows


def min_cell_target(T: int, quick: bool = False) -> dict:
    """Training step of the min cells (exact parallel pass) against the GRU's sequential one.

    The defaults first (`method="auto"`: chunks of 512 steps, sequential
    affine scan on CPU), then the alternatives: one whole-sequence pass, the
    associative and blocked scans, and the min cells' own sequential scan.
    """
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I))
    runs = {"gru/scan": ("gru", lj.Scan())}
    for name in ("min_gru",) if quick else ("min_gru", "min_lstm"):
        runs |= {
            f"{name}/auto": (name, "auto"),
            f"{name}/affine/one_pass": (name, lj.Affine(chunk=T)),
            f"{name}/affine/associative": (name, lj.Affine(algorithm="associative")),
            f"{name}/affine/blocked": (name, lj.Affine(algorithm="blocked")),
            f"{name}/scan": (name, lj.Scan()),
        }
    steps = {}
    for label, (name, method) in runs.items():
        cell = CELLS[name](H)
        params = cell.init(jax.random.PRNGKey(0), I)
        loss = lambda p, x, c=cell, m=method: jnp.mean(lj.unroll(c, p, x, method=m)[0] ** 2)  # noqa: E731
        steps[label] = (jax.jit(jax.grad(loss)), params)
    times = interleaved_best(steps, xs)
    gru = times["gru/scan"]
    return {"T": T, "train_s": times, "gru_scan_over": {k: gru / v for k, v in times.items()}}


MLSTM_HEADS = 4  # d = H / 4 = 16: each head a 16 x 16 memory


def mlstm_target(lengths, quick: bool = False) -> dict:
    """mLSTM (xLSTM): its parallel pass (`method="auto"`) against its own scan and the LSTM's.

    For each T: inference and training step (gradient of a mean-square loss on
    every output) of the mLSTM with `method="auto"` (the exact parallel pass:
    chunks of 512 steps, sequential scans on CPU), with `lj.Scan()`, and of the
    LSTM with `lj.Scan()`, timed in turn (best of interleaved rounds). Ratios
    above 1 mean the parallel pass is faster.
    """
    rows, load = [], os.getloadavg()
    for T in lengths:
        xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I))
        runs = {
            "mlstm/auto": (lj.mlstm(H, num_heads=MLSTM_HEADS), "auto"),
            "mlstm/scan": (lj.mlstm(H, num_heads=MLSTM_HEADS), lj.Scan()),
            "lstm/scan": (lj.lstm(H), lj.Scan()),
        }
        infer, train = {}, {}
        for label, (cell, method) in runs.items():
            params = cell.init(jax.random.PRNGKey(0), I)
            run = lambda p, x, c=cell, m=method: lj.unroll(c, p, x, method=m)[0]  # noqa: E731
            loss = lambda p, x, r=run: jnp.mean(r(p, x) ** 2)  # noqa: E731
            infer[label] = (jax.jit(run), params)
            train[label] = (jax.jit(jax.grad(loss)), params)
        rounds = 1 if quick else 5
        times = {"inference": interleaved_best(infer, xs, rounds),
                 "train": interleaved_best(train, xs, rounds)}  # fmt: skip
        ratios = {
            part: {
                "mlstm_scan_over_parallel": t["mlstm/scan"] / t["mlstm/auto"],
                "lstm_scan_over_mlstm_parallel": t["lstm/scan"] / t["mlstm/auto"],
                "lstm_scan_over_mlstm_scan": t["lstm/scan"] / t["mlstm/scan"],
            }
            for part, t in times.items()
        }
        row = {"T": T, "num_heads": MLSTM_HEADS, "seconds": times, "ratios": ratios}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"rows": rows, "load": load, "load_after": os.getloadavg()}


def interleaved_best(steps: dict, xs, rounds: int = 5) -> dict:
    """Best time of each step over `rounds` rounds run in turn (shared noise hits all)."""
    for f, p in steps.values():
        jax.block_until_ready(f(p, xs))
    best = dict.fromkeys(steps, math.inf)
    for _ in range(rounds):
        for label, (f, p) in steps.items():
            t = time.perf_counter()
            jax.block_until_ready(f(p, xs))
            best[label] = min(best[label], time.perf_counter() - t)
    return best


def methods_for(name: str, T: int) -> list[str]:
    """What is measured: the scan, the exact pass (min cells), the solvers where affordable.

    Left out: the solvers on the min cells beyond T = 1,000 (their exact pass
    is the point there); "newton" beyond T = 1,000 (its Jacobians,
    O(T B N^2), pass the default memory limit for the LSTM at T = 1,000);
    the LSTM's solvers beyond T = 1,000 (the quasi-Newton diagonal takes N
    jvps per step at once, O(T B N^2) transient memory: 2 GB and 8 s per
    call at T = 1,000, so about 20 GB at T = 10,000); every solver at
    T = 100,000.
    """
    methods = ["scan"] + (["affine"] if name.startswith("min_") else [])
    if T <= 1000 or (T <= 10_000 and name == "gru"):
        methods += [m for m in SOLVERS if not (m == "newton" and T > 1000)]
    return methods


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(result: dict) -> str:
    """The tables of `result` (the JSON this module writes), as Markdown."""
    cfg = result["config"]
    lines = [
        "# Parallel in time: benchmark",
        "",
        f"B = {cfg['B']}, I = {cfg['I']}, H = {cfg['H']}, float32, CPU (load before/after: "
        f"{cfg['load'][0]:.2f} / {cfg['load_after'][0]:.2f}). "
        "Times are the best of interleaved repeats; ratios are against the scan timed in "
        "the same run. Generated by `benchmarks/_bench_parallel.py`; runs:",
        "",
        *(f"- `{c}`" for c in [result["command"], *(result.get("merged_from") or [])]),
    ]
    target = result.get("min_cell_target")
    if target:
        title = f"## Training step against the GRU's sequential scan, T = {target['T']:,}"
        lines += ["", title, "", "| run | train ms | GRU scan time / this |", "|---|---|---|"]
        for label, t in target["train_s"].items():
            lines.append(f"| {label} | {1e3 * t:.1f} | {target['gru_scan_over'][label]:.2f} |")
    xlstm = result.get("mlstm_target")
    if xlstm:
        lines += ["", f"## mLSTM ({MLSTM_HEADS} heads): its parallel pass against the scans",
                  "", "`method=\"auto\"` is the exact parallel pass; ratios above 1 mean it is "
                  f"faster. Load before/after: {xlstm['load'][0]:.2f} / "
                  f"{xlstm['load_after'][0]:.2f}.", "",
                  "| T | part | mLSTM auto ms | mLSTM scan ms | LSTM scan ms | mLSTM scan / auto "
                  "| LSTM scan / mLSTM auto | LSTM scan / mLSTM scan |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in xlstm["rows"]:
            for part, t in row["seconds"].items():
                r = row["ratios"][part]
                lines.append(
                    f"| {row['T']:,} | {part} | {1e3 * t['mlstm/auto']:.1f} "
                    f"| {1e3 * t['mlstm/scan']:.1f} | {1e3 * t['lstm/scan']:.1f} "
                    f"| {r['mlstm_scan_over_parallel']:.2f} "
                    f"| {r['lstm_scan_over_mlstm_parallel']:.2f} "
                    f"| {r['lstm_scan_over_mlstm_scan']:.2f} |"
                )
    lines += ["", "## Every method against the scan", "",
              "| cell | T | method | iterations | infer / scan | train / scan | train temp MB "
              "| depth (CPU default) | depth (associative) |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        if "error" in r:
            head = f"| {r['cell']} | {r['T']:,} | {r['method']} |"
            lines.append(f"{head} refused: {r['error']} |" + " - |" * 5)
            continue
        lines.append(
            f"| {r['cell']} | {r['T']:,} | {r['method']} | {r['iterations'] or '-'} "
            f"| {_ratio(r['inference_vs_scan'])} | {_ratio(r['train_vs_scan'])} "
            f"| {r['train_temp_mb']:.1f} | {r['depth_cpu_default']:,} "
            f"| {r['depth_associative']:,} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=50 only, two cells")
    parser.add_argument("--lengths", type=int, nargs="*", default=[100, 1000, 10000])
    parser.add_argument("--cells", nargs="*", default=sorted(CELLS))
    parser.add_argument("--target-only", action="store_true", help="only the min-cell target")
    parser.add_argument("--skip-target", action="store_true", help="no min-cell target")
    parser.add_argument(
        "--xlstm", type=int, nargs="*", default=None,
        help="also the mLSTM's parallel pass against its scan and the LSTM's, at these T "
        "(default with the flag alone: 1000 10000)",
    )  # fmt: skip
    parser.add_argument("--xlstm-only", action="store_true", help="only the mLSTM comparison")
    parser.add_argument("--out", default="results/bench_parallel.json")
    parser.add_argument("--markdown", default=None, help="only rewrite the tables of this JSON")
    parser.add_argument(
        "--merge", default=None, help="a JSON of an earlier run whose other rows to keep"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            result = json.load(f)
        with open(os.path.splitext(args.markdown)[0] + ".md", "w") as f:
            f.write(markdown(result))
        return result
    lengths = [50] if args.quick else args.lengths
    cells = ["gru", "min_gru"] if args.quick else args.cells
    rows, load, merged_from, load_after = [], os.getloadavg(), None, None
    target_T = 100 if args.quick else 10_000
    xlstm = None
    if args.xlstm is not None or args.xlstm_only:
        xlstm_lengths = args.xlstm or ([50] if args.quick else [1000, 10_000])
        xlstm = mlstm_target(xlstm_lengths, args.quick)
    skip_rest = args.xlstm_only
    target = None if args.skip_target or skip_rest else min_cell_target(target_T, args.quick)
    print(json.dumps(target))
    for T in [] if args.target_only or skip_rest else lengths:
        for name in cells:
            methods = methods_for(name, T)
            rows += measure(name, T, methods)
            for row in rows[-len(methods) :]:
                print(json.dumps(row))
    if args.merge:  # rows of the other lengths, and the target, from an earlier run
        with open(args.merge) as f:
            earlier = json.load(f)
        new = {(r["cell"], r["T"], r["method"]) for r in rows}
        rows = [r for r in earlier["rows"] if (r["cell"], r["T"], r["method"]) not in new] + rows
        rows.sort(key=lambda r: r["T"])
        target = target or earlier.get("min_cell_target")
        xlstm = xlstm or earlier.get("mlstm_target")
        load = earlier["config"]["load"]
        if skip_rest:  # no row of this run: the config (and its loads) stay the earlier run's
            load_after = earlier["config"]["load_after"]
        merged_from = [earlier["command"]] + (earlier.get("merged_from") or [])
    result = {
        "config": {
            "B": B,
            "I": I,
            "H": H,
            "load": load,
            "load_after": load_after or os.getloadavg(),
        },
        "command": "python benchmarks/_bench_parallel.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "merged_from": merged_from,
        "rows": rows,
        "min_cell_target": target,
        "mlstm_target": xlstm,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(markdown(result))
    return result


if __name__ == "__main__":
    main()

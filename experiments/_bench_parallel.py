"""Parallel-in-time benchmark: every method against the sequential scan, in one run.

For each cell and sequence length T: Newton-type iterations to converge at
initialisation, wall time of inference and of a training step (gradient of
a loss) as ratios against `method="scan"` timed in the same run, XLA's
peak temporary memory of the compiled training step, and the sequential
depth (loop trips: what decides accelerator speed).

    python -m experiments._bench_parallel [--quick] [--lengths 100 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax
import jax.numpy as jnp

import lstmjax as lj

B, I, H = 16, 16, 64
CELLS = {"gru": lj.gru, "lstm": lj.lstm, "min_gru": lj.min_gru, "min_lstm": lj.min_lstm}
SOLVERS = ("quasi_newton", "elk", "newton")
REPEATS = 3


def depth(method: str, T: int, iterations: int) -> int:
    """Sequential loop trips of one forward pass (blocked affine scan on CPU: ~3 sqrt(T))."""
    blocked = 2 * max(1, math.isqrt(T)) + math.ceil(T / max(1, math.isqrt(T)))
    if method == "scan":
        return T
    if method == "affine":
        return blocked
    if method == "elk":
        return iterations * 2 * T  # this implementation's sequential Kalman smoother
    return iterations * blocked


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
        if method in ("scan", "gru_scan"):
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
                "depth": depth(method, T, iters),
            }
        )
    return rows


def min_cell_target(T: int) -> dict:
    """Training step of the min cells (exact parallel pass) against the GRU's sequential one."""
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I))
    times = {}
    algorithms = ("blocked", "associative", "sequential")
    runs = [("gru", "scan", "auto"), ("min_gru", "scan", "auto")]
    runs += [(n, "affine", a) for n in ("min_gru", "min_lstm") for a in algorithms]
    for name, method, algorithm in runs:
        cell = CELLS[name](H)
        params = cell.init(jax.random.PRNGKey(0), I)
        kw = {"method": method, "affine_algorithm": algorithm}
        train = jax.jit(
            jax.grad(lambda p, x, c=cell, k=kw: jnp.mean(lj.unroll(c, p, x, **k)[0] ** 2))
        )
        times[f"{name}/{method}/{algorithm}"] = best_time(train, params, xs)
    gru = times["gru/scan/auto"]
    return {"T": T, "train_s": times, "gru_scan_over": {k: gru / v for k, v in times.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=50 only, two cells")
    parser.add_argument("--lengths", type=int, nargs="*", default=[100, 1000, 10000])
    parser.add_argument("--cells", nargs="*", default=sorted(CELLS))
    parser.add_argument("--target-only", action="store_true", help="only the min-cell target")
    parser.add_argument("--skip-target", action="store_true", help="no min-cell target")
    parser.add_argument("--out", default="results/bench_parallel.json")
    args = parser.parse_args(argv)
    lengths = [50] if args.quick else args.lengths
    cells = ["gru", "min_gru"] if args.quick else args.cells
    rows = []
    target = None if args.skip_target else min_cell_target(100 if args.quick else 10_000)
    print(json.dumps(target))
    for T in [] if args.target_only else lengths:
        for name in cells:
            methods = ["scan"] + (["affine"] if name.startswith("min_") else [])
            if T <= 1000 or not name.startswith("min_"):
                methods += [m for m in SOLVERS if not (m == "newton" and T > 1000)]
            rows += measure(name, T, methods)
            for row in rows[-len(methods) :]:
                print(json.dumps(row))
    result = {
        "config": {"B": B, "I": I, "H": H, "load": os.getloadavg()},
        "rows": rows,
        "min_cell_target": target,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()

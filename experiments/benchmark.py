"""Benchmark: lstmjax against the JAX peers, PyTorch and a hand-written floor.

    python experiments/benchmark.py [--quick] [--cell lstm,gru,rnn]
        [--config small,medium,long,wide] [--mode train,infer,memory]
        [--variants autodiff,remat,...|all] [--out DIR]

Modes:
  train   one training step: forward, BPTT, Adam update (many-to-one MSE on
          the last hidden state).
  infer   the forward pass alone, returning every output.
  memory  peak memory, time and compile time of an LSTM training step
          against T, with and without remat (one fresh process per point).

Method: every implementation is compiled first (compile time reported apart)
and called once; the timed repetitions then go round-robin over the
implementations, in a fresh random order each round, so that load from other
users of a shared machine falls on all of them alike. Each figure is also
given as a ratio to lstmjax in the same run (peer ms / lstmjax ms: above 1
means lstmjax is faster), and as achieved GFLOP/s of the analytic matmul
count against a roofline measured on this machine (a jitted loop of the
recurrent matmul alone, same shapes).

Writes DIR/benchmark.json and DIR/benchmark.md (and, for memory,
DIR/benchmark_memory.json, .md and .png).
"""

from __future__ import annotations

import os

# Idle OpenMP workers (PyTorch's) sleep instead of spinning: on a shared,
# oversubscribed machine spinning workers stall PyTorch itself and steal the
# cores from whichever implementation runs next. Must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_peers as peers
from _bench_peers import GATES, JaxModel, Missing, Shape
from _bench_report import machine_info, memory_markdown, memory_plot, speed_markdown

CONFIGS = {
    "small": Shape(batch=32, time=100, inputs=32, hidden=128),
    "medium": Shape(batch=64, time=200, inputs=64, hidden=256),
    "long": Shape(batch=16, time=1000, inputs=16, hidden=64),
    "wide": Shape(batch=256, time=50, inputs=128, hidden=512),
}
QUICK_CONFIGS = {name: Shape(batch=4, time=8, inputs=3, hidden=8) for name in CONFIGS}
MEMORY_SHAPE = Shape(batch=16, time=0, inputs=16, hidden=256)
MEMORY_TIMES = (1000, 2000, 5000, 10_000, 20_000)
QUICK_MEMORY_TIMES = (16, 64)
TORCH_SETTLE_S = 0.1


class Settings(NamedTuple):
    budget_s: float  # target seconds of timed rounds per (config, cell, mode)
    min_reps: int
    max_reps: int
    memory_reps: int


FULL = Settings(budget_s=6.0, min_reps=3, max_reps=9, memory_reps=2)
QUICK = Settings(budget_s=0.0, min_reps=1, max_reps=1, memory_reps=1)


class Runner(NamedTuple):
    run: Callable[[], None]  # one call, blocking until the result is ready
    compile_s: float  # tracing + XLA compilation (0 for eager torch)
    # Untimed pause after each call: PyTorch's OpenMP workers keep spinning
    # for a while after a call and would slow whichever runner came next.
    settle_s: float = 0.0


# ------------------------------------------------------------------ steps


def data(s: Shape, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    xs = jax.random.normal(kx, (s.batch, s.time, s.inputs), jnp.float32)
    return xs, jax.random.normal(ky, (s.batch, s.hidden), jnp.float32)


def train_step(model: JaxModel, optimizer: optax.GradientTransformation):
    """Forward, BPTT and Adam: `(params, opt_state, xs, y) -> (params, opt_state, loss)`."""

    def loss_fn(params, xs, y):
        return jnp.mean((model.forward(params, xs)[1] - y) ** 2)

    def step(params, opt_state, xs, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def jax_runner(model: JaxModel, s: Shape, mode: str) -> Runner:
    params = model.init(jax.random.PRNGKey(1))
    xs, y = data(s)
    if mode == "infer":
        fn, args = jax.jit(lambda p, x: model.forward(p, x)[0]), (params, xs)
    else:
        optimizer = optax.adam(1e-3)
        fn = jax.jit(train_step(model, optimizer), donate_argnums=(0, 1))
        args = (params, optimizer.init(params), xs, y)
    with model.trace_context():
        start = time.perf_counter()
        compiled = fn.lower(*args).compile()
        compile_s = time.perf_counter() - start
    if mode == "infer":
        return Runner(lambda: jax.block_until_ready(compiled(*args)), compile_s)
    state = list(args[:2])

    def run():
        params, opt_state, loss = compiled(state[0], state[1], xs, y)
        jax.block_until_ready((params, opt_state, loss))
        state[:] = [params, opt_state]

    return Runner(run, compile_s)


def flops(s: Shape, cell: str, mode: str) -> float:
    """Matmul FLOPs of one call, counted analytically.

    Forward: 2*B*T*G*H*(I + H). The backward repeats the recurrent matmul
    twice (dh and dW_h) but the input one once (dW_x; no gradient for xs).
    """
    G = GATES[cell]
    per_step = 2 * s.batch * G * s.hidden
    if mode == "infer":
        return per_step * (s.inputs + s.hidden) * s.time
    return per_step * (2 * s.inputs + 3 * s.hidden) * s.time


def roofline(s: Shape, cell: str, reps: int = 3) -> float:
    """GFLOP/s of the recurrent matmul alone: a jitted loop of T dependent [B,H]x[H,G*H]."""
    G, H = GATES[cell], s.hidden
    w = jax.random.normal(jax.random.PRNGKey(0), (H, G * H), jnp.float32) / H
    h0 = jnp.ones((s.batch, H), jnp.float32)

    def loop(h, w):
        # The slice keeps each step dependent on the last (no loop hoisting).
        return jax.lax.fori_loop(0, s.time, lambda _, h: (h @ w)[:, :H], h)

    compiled = jax.jit(loop).lower(h0, w).compile()
    jax.block_until_ready(compiled(h0, w))
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(h0, w))
        best = min(best, time.perf_counter() - start)
    return 2 * s.batch * H * G * H * s.time / best / 1e9


# --------------------------------------------------------------- measuring


def build_runners(cell: str, s: Shape, mode: str, variants: list[str]) -> dict[str, Any]:
    """Name -> Runner, or a status string ('missing: ...', 'error: ...')."""
    runners: dict[str, Any] = {}
    for name, build in peers.jax_models(cell, s, variants).items():
        try:
            runners[name] = jax_runner(build(), s, mode)
        except Missing as e:
            runners[name] = f"missing: {e}"
        except Exception as e:  # a peer's API changed: report it, measure the rest
            runners[name] = f"error: {type(e).__name__}: {e}"
    # All available cores, as asked of a fair comparison; and one thread,
    # because on a loaded machine PyTorch's OpenMP barriers can stall.
    cores = len(os.sched_getaffinity(0))
    for threads in sorted({cores, 1}, reverse=True):
        name = peers.TORCH_NAME[cell] + ("" if threads == cores else f" ({threads} thread)")
        try:
            step = peers.torch_steps(cell, s, threads)
            runners[name] = Runner(getattr(step, mode), 0.0, settle_s=TORCH_SETTLE_S)
        except Missing as e:
            runners[name] = f"missing: {e}"
    return runners


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def timed_call(runner: Runner) -> float:
    elapsed = timed(runner.run)
    if runner.settle_s:
        time.sleep(runner.settle_s)
    return elapsed


def measure_group(runners: dict[str, Any], settings: Settings) -> dict[str, dict]:
    """Warm up each runner, then time round-robin repetitions."""
    live = {n: r for n, r in runners.items() if isinstance(r, Runner)}
    first = {n: timed_call(r) for n, r in live.items()}
    per_round = sum(first.values())
    reps = int(settings.budget_s / per_round) if per_round > 0 else settings.max_reps
    reps = max(settings.min_reps, min(settings.max_reps, reps))
    times: dict[str, list[float]] = {n: [] for n in live}
    order = random.Random(0)
    for _ in range(reps):
        # A fresh order each round, so that no runner always follows the same one.
        names = list(live)
        order.shuffle(names)
        for name in names:
            times[name].append(timed_call(live[name]))
    out = {}
    for name, runner in runners.items():
        if not isinstance(runner, Runner):
            out[name] = {"status": runner}
            continue
        ms = [1e3 * t for t in times[name]]
        out[name] = {
            "status": "ok",
            "compile_s": runner.compile_s,
            "first_call_ms": 1e3 * first[name],
            "times_ms": ms,
            "min_ms": min(ms),
            "median_ms": statistics.median(ms),
        }
    return out


def add_ratios(rows: dict[str, dict], total_flops: float, peak: float) -> None:
    base = rows["lstmjax"].get("median_ms")
    base_min = rows["lstmjax"].get("min_ms")
    for row in rows.values():
        if row["status"] != "ok":
            continue
        row["ratio_vs_lstmjax"] = row["median_ms"] / base if base else None
        row["min_ratio_vs_lstmjax"] = row["min_ms"] / base_min if base_min else None
        row["gflops"] = total_flops / (row["median_ms"] / 1e3) / 1e9
        row["roofline_fraction"] = row["gflops"] / peak


def run_speed(args, settings: Settings, configs: dict[str, Shape]) -> list[dict]:
    results = []
    for config in args.config:
        s = configs[config]
        for cell in args.cell:
            peak = roofline(s, cell)
            for mode in [m for m in args.mode if m in ("train", "infer")]:
                runners = build_runners(cell, s, mode, args.variants)
                rows = measure_group(runners, settings)
                add_ratios(rows, flops(s, cell, mode), peak)
                for impl, row in rows.items():
                    results.append(
                        {"config": config, "shape": s._asdict(), "cell": cell, "mode": mode}
                        | {"impl": impl, "roofline_gflops": peak}
                        | row
                    )
                print(summary_line(config, cell, mode, rows), flush=True)
    return results


def summary_line(config: str, cell: str, mode: str, rows: dict[str, dict]) -> str:
    parts = [
        f"{n}={r['median_ms']:.1f}ms(x{r['ratio_vs_lstmjax']:.2f})"
        for n, r in rows.items()
        if r["status"] == "ok"
    ]
    return f"[{config} {cell} {mode}] " + " ".join(parts)


# ----------------------------------------------------------------- memory


def memory_point(T: int, remat: bool, reps: int) -> dict:
    """One memory-mode point, meant to run in a fresh process (honest RSS high-water)."""
    import resource

    s = MEMORY_SHAPE._replace(time=T)
    model = peers.lstmjax_model("lstm", s, remat=remat)
    params = model.init(jax.random.PRNGKey(1))
    xs, y = data(s)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)
    fn = jax.jit(train_step(model, optimizer))
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    compiled = fn.lower(params, opt_state, xs, y).compile()
    compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    times = [timed(lambda: jax.block_until_ready(compiled(params, opt_state, xs, y)))]
    for _ in range(reps):  # the first call above is the warm-up
        times.append(timed(lambda: jax.block_until_ready(compiled(params, opt_state, xs, y))))
    return {
        "T": T,
        "remat": remat,
        "compile_s": compile_s,
        "temp_mb": mem.temp_size_in_bytes / 1e6,
        "argument_mb": mem.argument_size_in_bytes / 1e6,
        "output_mb": mem.output_size_in_bytes / 1e6,
        "rss_before_mb": rss_before_kb / 1e3,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        "first_call_s": times[0],
        "times_s": times[1:],
        "min_s": min(times[1:]),
    }


def run_memory(args, settings: Settings) -> list[dict]:
    """Each point in its own process; plain and remat alternate at each T."""
    points = []
    for T in QUICK_MEMORY_TIMES if args.quick else MEMORY_TIMES:
        for remat in (False, True):
            if args.quick:  # in-process: fast, but the RSS figure is then process-wide
                points.append({"status": "ok"} | memory_point(T, remat, settings.memory_reps))
                continue
            cmd = [sys.executable, __file__, "--memory-point", f"{T},{int(remat)}"]
            cmd += ["--memory-reps", str(settings.memory_reps)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                points.append({"T": T, "remat": remat, "status": f"error: {proc.stderr[-500:]}"})
            else:
                points.append({"status": "ok"} | json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"[memory] T={T} remat={remat}: {points[-1]}", flush=True)
    return points


# -------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes, one repetition")
    p.add_argument("--cell", default="lstm,gru,rnn")
    p.add_argument("--config", default="small,medium,long,wide")
    p.add_argument("--mode", default="train,infer,memory")
    p.add_argument(
        "--variants",
        default="",
        help=f"lstmjax technique variants to add, from {','.join(peers.VARIANTS)} (or 'all')",
    )
    p.add_argument("--out", default="results")
    p.add_argument("--memory-point", help=argparse.SUPPRESS)
    p.add_argument("--memory-reps", type=int, default=FULL.memory_reps, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, allowed in (
        ("cell", GATES),
        ("config", CONFIGS),
        ("mode", ("train", "infer", "memory")),
    ):
        values = [v.strip() for v in getattr(args, key).split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad:
            p.error(f"--{key}: unknown {bad}; choose from {list(allowed)}")
        setattr(args, key, values)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.variants == ["all"]:
        args.variants = list(peers.VARIANTS)
    bad = [v for v in args.variants if v not in peers.VARIANTS]
    if bad:
        p.error(f"--variants: unknown {bad}; choose from {list(peers.VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.memory_point:
        T, remat = (int(v) for v in args.memory_point.split(","))
        print(json.dumps(memory_point(T, bool(remat), args.memory_reps)))
        return
    settings = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    header = {"machine": machine, "quick": args.quick, "settings": settings._asdict()}
    if {"train", "infer"} & set(args.mode):
        configs = QUICK_CONFIGS if args.quick else CONFIGS
        start = time.perf_counter()
        results = run_speed(args, settings, configs)
        doc = header | {"wall_s": time.perf_counter() - start, "results": results}
        (out / "benchmark.json").write_text(json.dumps(doc, indent=1))
        (out / "benchmark.md").write_text(speed_markdown(results, machine))
    if "memory" in args.mode:
        start = time.perf_counter()
        points = run_memory(args, settings)
        doc = header | {"shape": MEMORY_SHAPE._asdict(), "points": points}
        doc |= {"wall_s": time.perf_counter() - start}
        (out / "benchmark_memory.json").write_text(json.dumps(doc, indent=1))
        (out / "benchmark_memory.md").write_text(memory_markdown(points))
        memory_plot(points, out / "benchmark_memory.png")
    print(f"wrote {out}/")


if __name__ == "__main__":
    main()

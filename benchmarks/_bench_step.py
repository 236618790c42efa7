"""Step mode: one training step (or forward pass) of every implementation, interleaved.

Every implementation is compiled first (compile time reported apart) and
called once; the timed repetitions then go round-robin over the
implementations, in a fresh random order each round, so that load from other
users of a shared machine falls on all of them alike. Each figure is also
given as a ratio to lstmjax in the same run (peer ms / lstmjax ms: above 1
means lstmjax is faster), and as achieved GFLOP/s of the analytic matmul
count against a roofline measured on this machine (a jitted loop of the
recurrent matmul alone, same shapes).

This runs inside one environment profile's process (see `_bench_env.py`):
nothing here sets a thread count or any other tuning knob.
"""

from __future__ import annotations

import functools
import random
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import _bench_peers as peers
import jax
import jax.numpy as jnp
import optax
from _bench_peers import GATES, JaxModel, Missing, Shape

CONFIGS = {
    "small": Shape(batch=32, time=100, inputs=32, hidden=128),
    "medium": Shape(batch=64, time=200, inputs=64, hidden=256),
    "long": Shape(batch=16, time=1000, inputs=16, hidden=64),
    "wide": Shape(batch=256, time=50, inputs=128, hidden=512),
}
QUICK_CONFIGS = {name: Shape(batch=4, time=8, inputs=3, hidden=8) for name in CONFIGS}
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
    # for a while after a call (at the default wait policy) and would slow
    # whichever runner came next.
    settle_s: float = 0.0


@functools.partial(jax.jit, static_argnums=(0, 1))
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
    # Jitted: one compilation, where eager initialisation compiles each op apart.
    params = jax.jit(model.init)(jax.random.PRNGKey(1))
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


def torch_runner(cell: str, s: Shape, mode: str, compiled: bool) -> Runner:
    start = time.perf_counter()
    step = peers.torch_steps(cell, s, compiled=compiled)
    compile_s = time.perf_counter() - start if compiled else 0.0
    return Runner(getattr(step, mode), compile_s, settle_s=TORCH_SETTLE_S)


def build_runners(cell: str, s: Shape, mode: str, variants: list[str]) -> dict[str, Any]:
    """Name -> Runner, or a status string ('missing: ...', 'error: ...')."""
    runners: dict[str, Any] = {}
    builders: dict[str, Callable[[], Runner]] = {
        name: (lambda build=build: jax_runner(build(), s, mode))
        for name, build in peers.jax_models(cell, s, variants).items()
    }
    name = peers.TORCH_NAME[cell]
    builders[name] = lambda: torch_runner(cell, s, mode, compiled=False)
    builders[f"torch.compile({name})"] = lambda: torch_runner(cell, s, mode, compiled=True)
    for name, build in builders.items():
        try:
            runners[name] = build()
        except Missing as e:
            runners[name] = f"missing: {e}"
        except Exception as e:  # a peer's API changed: report it, measure the rest
            runners[name] = f"error: {type(e).__name__}: {e}"
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


def run_speed(
    configs: dict[str, Shape], cells: list[str], modes: list[str], variants: list[str],
    settings: Settings,
) -> list[dict]:  # fmt: skip
    """Every (config, cell, mode) group in turn: one row per implementation."""
    results = []
    for config, s in configs.items():
        for cell in cells:
            peak = roofline(s, cell)
            for mode in modes:
                rows = measure_group(build_runners(cell, s, mode, variants), settings)
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

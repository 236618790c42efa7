"""Timing of the training layouts: a population in one process, and processes.

    python benchmarks/_bench_training.py ensemble [--rounds 5] [--steps 10] [--method auto]
        [--heap-limit BYTES]
    python benchmarks/_bench_training.py processes [--max-processes 4]

`ensemble`: 8 LSTM regressors (H=64, B=64, T=50, adding problem, Adam with
a learning rate per member through `optax.inject_hyperparams`), trained
(a) one after another by the one `make_train_step` (the sequential runs,
each from `train.member_state` of the population), and (b) at once, the
population being `jax.vmap` of `init_state`, by the two population steps:
`jax.vmap(step, in_axes=(0, None))` ("vmap", batched matmuls) and
`train.ensemble(step)` ("ensemble", a `jax.lax.map` over the members).
`--method` is `lj.unroll`'s method ("auto", the default, or a shorthand
such as "scan" or "fused"). `--heap-limit` compiles the "vmap" step with
XLA's `xla_multiheap_size_constraint_per_heap` (a per-program compiler
option, no environment variable): its temporaries are then several blocks of
at most that size instead of one, and glibc's malloc reuses freed blocks up
to 32 MB instead of mapping larger ones afresh on every call.
Rounds alternate between the variants, and the median time of each is
reported as a ratio: sequential time / population time (above 1: the
population step is faster).

`processes`: the same data-parallel job (`tests/_dist_worker.py bench`) on
1, 2 and 4 processes of one forced host device each, global batch fixed;
reports sequences/s and the bytes all-reduced per step, read from the
compiled program (XLA's all-reduce operands), beside the gradient's size.

Speed only, printed as JSON; correctness is the tests' business.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

MEMBERS, HIDDEN, BATCH, LENGTH = 8, 64, 64, 50


def bench_ensemble(
    rounds: int, steps: int, method: str = "auto", heap_limit: Optional[int] = None
) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    import lstmjax as lj
    from lstmjax import tasks, train

    cell, head = lj.lstm(HIDDEN), lj.dense(1)

    def init(key):
        k1, k2 = jax.random.split(key)
        return (cell.init(k1, 2), head.init(k2, HIDDEN))

    def apply(params, xs):
        hs, _ = lj.unroll(cell, params[0], xs, method=method)
        return head.apply(params[1], hs[:, -1])

    def mse(pred, target):
        return jnp.mean((pred - target) ** 2)

    batch = tasks.adding_problem(jax.random.key(3), BATCH, LENGTH)
    rates = jnp.array([1e-3 * (m + 1) for m in range(MEMBERS)])

    # Each member's learning rate lives in its optimizer state, so one step
    # (one compilation) serves every member, alone or as a population.
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

    def member(key, learning_rate):
        params_key, state_key = jax.random.split(key)
        adam = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
        return train.init_state(init(params_key), adam, key=state_key)

    population = jax.vmap(member)(jax.random.split(jax.random.key(0), MEMBERS), rates)
    step = train.make_train_step(apply, mse, optimizer)
    singles = [train.member_state(population, m) for m in range(MEMBERS)]
    options = {} if heap_limit is None else {"xla_multiheap_size_constraint_per_heap": heap_limit}
    populations = {
        "vmap": jax.jit(jax.vmap(step, in_axes=(0, None)), compiler_options=options),
        "ensemble": train.ensemble(step),
    }

    def run_sequential():
        for state in singles:
            for _ in range(steps):
                state, metrics = step(state, batch)
            jax.block_until_ready(metrics)

    def runner(population_step):
        def run():
            state = population
            for _ in range(steps):
                state, metrics = population_step(state, batch)
            jax.block_until_ready(metrics)

        return run

    variants = {"sequential": run_sequential, **{k: runner(s) for k, s in populations.items()}}
    for run in variants.values():
        run()  # compile and warm up
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "method": method, "heap_limit": heap_limit, "members": MEMBERS, "hidden": HIDDEN,
        "batch": BATCH, "length": LENGTH, "steps": steps, "rounds": rounds,
        "median_s": median,
        "speedup_vs_sequential": {
            k: median["sequential"] / median[k] for k in populations
        },
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_processes(max_processes: int, steps: int) -> list[dict]:
    worker = Path(__file__).resolve().parents[1] / "tests" / "_dist_worker.py"
    rows, n = [], 1
    while n <= max_processes:
        port = free_port()
        args = ["--nproc", str(n), "--port", str(port), "--devices", "1", "--steps", str(steps),
                "--batch", "64", "--shards", "4", "--hidden", "64", "--length", "50"]  # fmt: skip
        procs = [subprocess.Popen([sys.executable, str(worker), "bench", "--rank", str(r), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for r in range(n)]  # fmt: skip
        try:
            out = [p.communicate(timeout=600)[0] for p in procs]
        finally:
            for p in procs:
                p.kill()
        line = next(x for x in out[0].splitlines() if x.startswith("RESULT "))
        rows.append(json.loads(line[len("RESULT ") :]))
        n *= 2
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["ensemble", "processes"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-processes", type=int, default=4)
    parser.add_argument("--method", default="auto", help="lj.unroll's method (ensemble)")
    parser.add_argument(
        "--heap-limit",
        type=int,
        default=None,
        help="XLA's per-heap size limit for the vmap step, bytes (ensemble)",
    )
    args = parser.parse_args()
    if args.what == "ensemble":
        result = bench_ensemble(args.rounds, args.steps, args.method, args.heap_limit)
        print(json.dumps(result, indent=1))
    else:
        print(json.dumps(bench_processes(args.max_processes, args.steps), indent=1))


if __name__ == "__main__":
    main()

"""Loop mode: end-to-end training the way the README tells users to train.

Four loops train the same model (LSTM(H) and a dense head, many-to-one, MSE,
Adam 3e-3, gradient clipping at norm 1) on the same batches of the adding
problem (`lstmjax.tasks.adding_problem`, made once before timing):

- `fit`: `lstmjax.train.fit` at its defaults (progress bar on, metrics of
  every step kept, the divergence check every step);
- `bare loop`: a plain Python loop over the same jitted step, waiting only
  at the end (JAX dispatches the steps asynchronously);
- `bare loop + metrics to host`: the same, copying each step's metrics to
  the host (`jax.device_get`), which is what checking them every step costs;
- `torch loop`: an idiomatic PyTorch loop of `nn.LSTM` + `nn.Linear` with
  `clip_grad_norm_` and `loss.item()` every step (the usual logging).

Rounds go over the loops in a fresh random order; each figure is per step.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import optax
from _bench_peers import TORCH_CPU, Shape

import lstmjax as lj
from lstmjax import losses, tasks, train

LOOP_SHAPE = Shape(batch=64, time=64, inputs=2, hidden=64)
QUICK_LOOP_SHAPE = Shape(batch=8, time=16, inputs=2, hidden=8)
LEARNING_RATE = 3e-3
CLIP_NORM = 1.0


class LoopSettings(NamedTuple):
    steps: int  # steps per timed run of one loop
    rounds: int  # timed runs of each loop (interleaved)
    batches: int  # distinct batches, cycled


FULL_LOOP = LoopSettings(steps=100, rounds=5, batches=50)
QUICK_LOOP = LoopSettings(steps=4, rounds=1, batches=4)
LOOPS = ("fit", "bare loop", "bare loop + metrics to host", "torch loop")


def make_batches(s: Shape, n: int, seed: int = 0) -> list[tuple[jax.Array, jax.Array]]:
    key = jax.random.PRNGKey(seed)
    out = [tasks.adding_problem(jax.random.fold_in(key, i), s.batch, s.time) for i in range(n)]
    return jax.block_until_ready(out)


def lstmjax_loops(s: Shape, batches: list, steps: int) -> dict[str, Callable[[], None]]:
    """The three JAX loops over one jitted step (the README's model and step)."""
    cell, head = lj.lstm(s.hidden), lj.dense(1)
    params = jax.jit(lambda k0, k1: (cell.init(k0, s.inputs), head.init(k1, s.hidden)))(
        jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    )

    def apply_fn(params, xs):
        hs, _ = lj.unroll(cell, params[0], xs)
        return head.apply(params[1], hs[:, -1])

    optimizer = optax.chain(optax.clip_by_global_norm(CLIP_NORM), optax.adam(LEARNING_RATE))
    step = train.make_train_step(apply_fn, losses.mse, optimizer)
    state0 = train.init_state(params, optimizer, key=jax.random.PRNGKey(2))

    def batch_fn(i):
        return batches[i % len(batches)]

    def fit():
        jax.block_until_ready(train.fit(step, state0, batch_fn, num_steps=steps)[0])

    def bare(to_host: bool):
        def run():
            state = state0
            for i in range(steps):
                state, metrics = step(state, batch_fn(i))
                if to_host:
                    jax.device_get(metrics)
            jax.block_until_ready((state, metrics))

        return run

    return {"fit": fit, "bare loop": bare(False), "bare loop + metrics to host": bare(True)}


def torch_loop(s: Shape, batches: list, steps: int, seed: int = 0) -> Callable[[], None]:
    import torch

    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(s.inputs, s.hidden, batch_first=True)
    head = torch.nn.Linear(s.hidden, 1)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=LEARNING_RATE)
    data = [(torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y))) for x, y in batches]

    def run():
        history = []
        for i in range(steps):
            x, y = data[i % len(data)]
            opt.zero_grad(set_to_none=True)
            hs, _ = lstm(x)
            loss = torch.nn.functional.mse_loss(head(hs[:, -1]), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
            opt.step()
            history.append(loss.item())

    return run


def run_loops(s: Shape, settings: LoopSettings) -> dict:
    """Per-step times of each loop and fit's overhead over the bare loop."""
    batches = make_batches(s, settings.batches)
    loops = lstmjax_loops(s, batches, settings.steps)
    missing = {}
    try:
        loops["torch loop"] = torch_loop(s, batches, settings.steps)
    except ImportError as e:
        missing["torch loop"] = f"missing: {e} ({TORCH_CPU})"
    warmup = {}
    for name, run in loops.items():  # compiles the step, fills caches
        start = time.perf_counter()
        run()
        warmup[name] = time.perf_counter() - start
    per_step: dict[str, list[float]] = {name: [] for name in loops}
    order = random.Random(0)
    for _ in range(settings.rounds):
        names = list(loops)
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            loops[name]()
            per_step[name].append(1e3 * (time.perf_counter() - start) / settings.steps)
    rows = {
        name: {
            "warmup_s": warmup[name],
            "ms_per_step": ms,
            "min_ms": min(ms),
            "median_ms": statistics.median(ms),
        }
        for name, ms in per_step.items()
    }
    bare = rows["bare loop"]
    for row in rows.values():
        row["min_ratio_vs_bare"] = row["min_ms"] / bare["min_ms"]
        row["median_ratio_vs_bare"] = row["median_ms"] / bare["median_ms"]
    return {
        "shape": s._asdict(),
        "task": "adding_problem",
        "settings": settings._asdict(),
        "loops": rows,
        "fit_overhead_min": rows["fit"]["min_ratio_vs_bare"] - 1,
        "fit_overhead_median": rows["fit"]["median_ratio_vs_bare"] - 1,
        "missing": missing,
    }

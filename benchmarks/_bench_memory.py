"""Memory mode: peak memory, time and compile time of an LSTM training step against T.

Plain BPTT against remat, one fresh process per point (so that the resident
high-water mark is the point's own), in the default environment profile.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import _bench_peers as peers
import jax
import optax
from _bench_peers import Shape
from _bench_step import data, timed, train_step

MEMORY_SHAPE = Shape(batch=16, time=0, inputs=16, hidden=256)
MEMORY_TIMES = (1000, 2000, 5000, 10_000, 20_000)
QUICK_MEMORY_TIMES = (16, 64)


def memory_point(T: int, remat: bool, reps: int) -> dict:
    """One memory-mode point, meant to run in a fresh process (honest RSS high-water)."""
    import resource

    s = MEMORY_SHAPE._replace(time=T)
    model = peers.lstmjax_model("lstm", s, remat=remat)
    params = jax.jit(model.init)(jax.random.PRNGKey(1))
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


def run_memory(quick: bool, reps: int, script: str, env: dict) -> list[dict]:
    """Each point in its own process (`script --memory-point T,remat`), plain and remat in turn."""
    points = []
    for T in QUICK_MEMORY_TIMES if quick else MEMORY_TIMES:
        for remat in (False, True):
            if quick:  # in-process: fast, but the RSS figure is then process-wide
                points.append({"status": "ok"} | memory_point(T, remat, reps))
                continue
            cmd = [sys.executable, script, "--memory-point", f"{T},{int(remat)}"]
            cmd += ["--memory-reps", str(reps)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                points.append({"T": T, "remat": remat, "status": f"error: {proc.stderr[-500:]}"})
            else:
                points.append({"status": "ok"} | json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"[memory] T={T} remat={remat}: {points[-1]}", flush=True)
    return points


def memory_markdown(points: list[dict]) -> str:
    lines = [
        "# lstmjax memory vs T (LSTM training step, B=16, I=16, H=256)",
        "",
        "temp = XLA's temporary buffers of the compiled step (memory_analysis); RSS = "
        "the process's resident high-water mark (fresh process per point).",
        "",
        "| T | remat | temp MB | RSS peak MB | step s (min) | compile s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for p in points:
        if p["status"] != "ok":
            lines.append(f"| {p['T']} | {p['remat']} | {p['status'][:60]} | | | |")
            continue
        lines.append(
            f"| {p['T']} | {p['remat']} | {p['temp_mb']:.1f} | {p['rss_peak_mb']:.0f} | "
            f"{p['min_s']:.3f} | {p['compile_s']:.2f} |"
        )
    lines += ["", "| T | temp plain / remat | time remat / plain |", "|---:|---:|---:|"]
    for T, ratio_mem, ratio_time in memory_ratios(points):
        lines.append(f"| {T} | {ratio_mem:.2f} | {ratio_time:.2f} |")
    return "\n".join(lines) + "\n"


def memory_ratios(points: list[dict]) -> list[tuple[int, float, float]]:
    ok = {(p["T"], p["remat"]): p for p in points if p["status"] == "ok"}
    out = []
    for T in sorted({T for T, _ in ok}):
        if (T, False) in ok and (T, True) in ok:
            plain, remat = ok[T, False], ok[T, True]
            out.append((T, plain["temp_mb"] / remat["temp_mb"], remat["min_s"] / plain["min_s"]))
    return out


def memory_plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = (
        ("temp_mb", "memory (MB): XLA temporaries, process RSS"),
        ("min_s", "training step (s)"),
        ("compile_s", "compile time (s)"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for remat, style in ((False, "o-"), (True, "s--")):
            pts = sorted(
                (p["T"], p[key]) for p in points if p["status"] == "ok" and p["remat"] == remat
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label="remat" if remat else "plain BPTT")
        if key == "temp_mb":
            for remat, style in ((False, "o:"), (True, "s:")):
                pts = sorted(
                    (p["T"], p["rss_peak_mb"])
                    for p in points
                    if p["status"] == "ok" and p["remat"] == remat
                )
                if pts:
                    name = "RSS peak, " + ("remat" if remat else "plain")
                    ax.plot(*zip(*pts, strict=True), style, alpha=0.5, label=name)
        ax.set_xscale("log")
        if key == "compile_s":
            ax.set_ylim(bottom=0)  # linear: flat in T is the point
        else:
            ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle("lstmjax LSTM training step, B=16, I=16, H=256")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

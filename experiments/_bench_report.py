"""What the benchmark writes: the machine it ran on, the markdown tables, the memory plot.

`benchmark.py` measures; this module only formats what it measured (the
rows of `benchmark.json` and `benchmark_memory.json`).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax


def machine_info() -> dict:
    import numpy

    info = {
        "platform": platform.platform(),
        "processor": cpu_name(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "numpy": numpy.__version__,
    }
    for module in ("flax", "equinox", "haiku", "torch", "optax"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = "missing"
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def speed_markdown(results: list[dict], machine: dict) -> str:
    lines = [
        "# lstmjax benchmark",
        "",
        f"Machine: {machine['processor']}, {machine['cpus_available']} CPUs available, "
        f"backend {machine['backend']}, jax {machine['jax']}, torch {machine['torch']}; "
        f"load average at start {machine['load_average_at_start']}.",
        "",
        "ratio = implementation's time / lstmjax's time in the same interleaved run "
        "(above 1: lstmjax is faster), of the medians and of the minima (on a shared "
        "machine the minimum is the steadier figure). GFLOP/s (of the median) counts the matmuls "
        "(forward; training adds the backward); roofline = a jitted loop of the "
        "recurrent matmul alone at the same shapes.",
        "",
        "## Summary (ratios of minima)",
        "",
        *summary_markdown(results),
        "",
        "## Every implementation",
        "",
        "| config | cell | mode | implementation | median ms | min ms | ratio vs lstmjax "
        "(median) | ratio (min) | GFLOP/s | % roofline | compile s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        head = f"| {r['config']} | {r['cell']} | {r['mode']} | {r['impl']} |"
        if r["status"] != "ok":
            lines.append(f"{head} {r['status'][:90]} | | | | | | |")
            continue
        lines.append(
            f"{head} {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['ratio_vs_lstmjax']:.2f} | "
            f"{r['min_ratio_vs_lstmjax']:.2f} | "
            f"{r['gflops']:.1f} | {100 * r['roofline_fraction']:.0f} | {r['compile_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def summary_markdown(results: list[dict]) -> list[str]:
    """One row per (config, cell, mode): lstmjax against its fastest JAX peer and torch.

    The fastest peer is the JAX implementation other than lstmjax (and its
    technique variants) and the hand-written floor with the smallest minimum.
    """
    lines = [
        "| config | cell | mode | lstmjax ms (min) | GFLOP/s (roofline) | fastest JAX peer "
        "| its time / lstmjax | torch / lstmjax | torch 1-thread / lstmjax |",
        "|---|---|---|---|---:|---|---:|---:|---:|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["config"], r["cell"], r["mode"]), []).append(r)
    for (config, cell, mode), rows in groups.items():
        ok = {r["impl"]: r for r in rows if r["status"] == "ok"}
        if "lstmjax" not in ok:
            continue
        ours = ok["lstmjax"]
        jax_peers = [
            r for name, r in ok.items() if not name.startswith(("lstmjax", "floor", "torch"))
        ]
        best = min(jax_peers, key=lambda r: r["min_ms"], default=None)
        torch_rows = [r for name, r in ok.items() if name.startswith("torch")]
        multi = next((r for r in torch_rows if "thread" not in r["impl"]), None)
        single = next((r for r in torch_rows if "thread" in r["impl"]), None)

        def ratio(r):
            return "-" if r is None else f"{r['min_ratio_vs_lstmjax']:.2f}"

        peak = ours["roofline_gflops"]
        lines.append(
            f"| {config} | {cell} | {mode} | {ours['min_ms']:.1f} | "
            f"{ours['gflops']:.0f} ({peak:.0f}) | {best['impl'] if best else '-'} | "
            f"{ratio(best)} | {ratio(multi)} | {ratio(single)} |"
        )
    return lines


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

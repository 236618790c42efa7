"""What the benchmark writes: tables and findings from `benchmark.json` and `benchmark_loop.json`.

`benchmark.py` measures; this module only formats what it measured, so that
`benchmark.md` and the README's performance block hold no number that is not
in the JSON. Ratios are peer / lstmjax of the minima in the same process
(above 1: lstmjax is faster); a profile's figures come from its own process.
"""

from __future__ import annotations

import json
from pathlib import Path

TORCH = ("torch.nn.LSTM", "torch.nn.GRU", "torch.nn.RNN")
# Ratios within this band of 1 are called even: identical code timed against
# itself on these shared machines has varied by about this much.
NOISE = 0.15


def load(results: Path) -> tuple[dict | None, dict | None]:
    docs = []
    for name in ("benchmark.json", "benchmark_loop.json"):
        path = Path(results) / name
        docs.append(json.loads(path.read_text()) if path.exists() else None)
    return docs[0], docs[1]


# ------------------------------------------------------------- run header


def run_lines(doc: dict, what: str, banner: bool = True) -> list[str]:
    """Who, when, where, under what load; and, with `banner`, that a busy run is no headline."""
    m, st, v = doc["machine"], doc["state"], doc["verdict"]
    vers = m["versions"]
    libs = ", ".join(
        f"{k} {vers[k]}" for k in ("jax", "flax", "equinox", "haiku", "torch", "optax")
    )
    lines = [
        f"{what}: `{doc['command']}`" + (" (quick sizes)" if doc["quick"] else "") + ", "
        f"{st['date']}, {st['wall_s'] / 60:.1f} min. Machine: {m['processor']}, "
        f"{m['cpus_available']} CPUs, backend {m['backend']}; {libs}. Load average before "
        f"{st['load_before'][0]:.2f}, after {st['load_after'][0]:.2f} (the benchmark's own "
        f"threads included); other processes used {100 * st['other_cpu_share']:.0f}% of the "
        "CPUs meanwhile.",
    ]
    if doc["removed_from_environment"]:
        lines.append(
            "Removed from the environment of every profile: "
            + ", ".join(f"`{k}={val}`" for k, val in doc["removed_from_environment"].items())
            + "."
        )
    if banner and v["busy"]:
        lines += [
            "",
            f"**Busy machine: not a headline.** {'; '.join(v['reasons'])} (limits: load "
            f"{v['max_load']:.2f}, other processes {100 * v['max_other_share']:.0f}%). The "
            "figures were measured under that load.",
        ]
    return lines


def profile_lines(doc: dict) -> list[str]:
    threads = {}
    for w in doc.get("workers", doc.get("runs", [])):
        threads[w["profile"]] = w["torch_threads"]
    out = []
    for name, setting in doc["profiles"].items():
        what = ", ".join(f"`{k}={val}`" for k, val in setting.items()) or "no tuning variable set"
        out.append(f"- `{name}`: {what} (torch threads: {threads.get(name, '?')})")
    return out


# ------------------------------------------------------------- step mode


def groups(results: list[dict], profile: str = "default") -> dict[tuple, dict[str, dict]]:
    out: dict[tuple, dict[str, dict]] = {}
    for r in results:
        if r["profile"] == profile:
            out.setdefault((r["config"], r["cell"], r["mode"]), {})[r["impl"]] = r
    return out


def ok(row: dict | None) -> bool:
    return row is not None and row["status"] == "ok"


def ratio(row: dict | None) -> str:
    return f"{row['min_ratio_vs_lstmjax']:.2f}" if ok(row) else "-"


def torch_rows(rows: dict[str, dict]) -> tuple[dict | None, dict | None]:
    eager = next((r for n, r in rows.items() if n in TORCH), None)
    compiled = next((r for n, r in rows.items() if n.startswith("torch.compile")), None)
    return eager, compiled


def fastest_jax_peer(rows: dict[str, dict]) -> dict | None:
    """The JAX peer (not lstmjax, its variants, the floor or torch) with the least minimum."""
    peers = [
        r for n, r in rows.items() if ok(r) and not n.startswith(("lstmjax", "floor", "torch"))
    ]
    return min(peers, key=lambda r: r["min_ms"], default=None)


def summary_table(results: list[dict]) -> list[str]:
    """The headline table: one row per (config, cell, mode), default profile."""
    lines = [
        "| config | cell | mode | lstmjax ms (min) | GFLOP/s (roofline) | fastest JAX peer "
        "| its time / lstmjax | torch / lstmjax | torch.compile / lstmjax |",
        "|---|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for (config, cell, mode), rows in groups(results).items():
        ours = rows.get("lstmjax")
        if not ok(ours):
            continue
        best = fastest_jax_peer(rows)
        eager, compiled = torch_rows(rows)
        lines.append(
            f"| {config} | {cell} | {mode} | {ours['min_ms']:.1f} | "
            f"{ours['gflops']:.0f} ({ours['roofline_gflops']:.0f}) | "
            f"{best['impl'] if best else '-'} | {ratio(best)} | {ratio(eager)} | "
            f"{ratio(compiled) if ok(compiled) else 'eager fallback' if compiled else '-'} |"
        )
    return lines


def tuned_profiles(results: list[dict]) -> list[str]:
    return [p for p in dict.fromkeys(r["profile"] for r in results) if p != "default"]


def tuning_table(results: list[dict], impls: tuple[str, ...] | None = None) -> list[str]:
    """Min ms of each implementation under each profile, and tuned / default."""
    tuned = tuned_profiles(results)
    if not tuned:
        return []
    by_profile = {p: groups(results, p) for p in ["default", *tuned]}
    head = "| config | cell | mode | implementation | default ms |"
    head += "".join(f" {p} ms | {p} / default |" for p in tuned)
    lines = [head, "|---|---|---|---|---:|" + "---:|---:|" * len(tuned)]
    for key, rows in by_profile["default"].items():
        for impl, row in rows.items():
            if not ok(row) or (impls is not None and not impl.startswith(impls)):
                continue
            if impl.startswith("lstmjax["):
                continue  # the technique variants run in the default profile only
            cells = [f"| {' | '.join(key)} | {impl} | {row['min_ms']:.2f} |"]
            for p in tuned:
                other = by_profile[p].get(key, {}).get(impl)
                cells.append(
                    f" {other['min_ms']:.2f} | {other['min_ms'] / row['min_ms']:.2f} |"
                    if ok(other)
                    else " - | - |"
                )
            lines.append("".join(cells))
    return lines


def every_table(results: list[dict]) -> list[str]:
    lines = [
        "| profile | config | cell | mode | implementation | median ms | min ms | ratio vs "
        "lstmjax (median) | ratio (min) | GFLOP/s | % roofline | compile s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        head = f"| {r['profile']} | {r['config']} | {r['cell']} | {r['mode']} | {r['impl']} |"
        if r["status"] != "ok":
            lines.append(f"{head} {r['status'][:240]} | | | | | | |")
            continue
        lines.append(
            f"{head} {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['ratio_vs_lstmjax']:.2f} | "
            f"{r['min_ratio_vs_lstmjax']:.2f} | {r['gflops']:.1f} | "
            f"{100 * r['roofline_fraction']:.0f} | {r['compile_s']:.2f} |"
        )
    return lines


# ------------------------------------------------------------- loop mode


def loop_table(doc: dict) -> list[str]:
    lines = [
        "| profile | loop | ms/step (min) | ms/step (median) | / bare loop (min) "
        "| / bare loop (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for run in doc["runs"]:
        for name, row in run["loops"].items():
            lines.append(
                f"| {run['profile']} | {name} | {row['min_ms']:.2f} | {row['median_ms']:.2f} | "
                f"{row['min_ratio_vs_bare']:.3f} | {row['median_ratio_vs_bare']:.3f} |"
            )
    return lines


def loop_lines(doc: dict) -> list[str]:
    run = doc["runs"][0]
    s, st = run["shape"], run["settings"]
    return [
        f"`train.fit` at its defaults against a bare loop over the same jitted step and an "
        f"idiomatic PyTorch loop, on the same adding-problem batches: LSTM H={s['hidden']}, "
        f"B={s['batch']}, T={s['time']}, {st['steps']} steps per timed run, {st['rounds']} "
        "interleaved runs of each loop.",
    ]


def fit_overhead_lines(doc: dict) -> list[str]:
    out = []
    for run in doc["runs"]:
        loops = run["loops"]
        out.append(
            f"- `{run['profile']}`: fit's overhead over the bare loop "
            f"{100 * run['fit_overhead_min']:+.1f}% (minima), "
            f"{100 * run['fit_overhead_median']:+.1f}% "
            f"(medians); the bare loop copying metrics to the host every step: "
            f"{100 * (loops['bare loop + metrics to host']['min_ratio_vs_bare'] - 1):+.1f}%; "
            + (
                f"torch loop / bare loop {loops['torch loop']['min_ratio_vs_bare']:.2f}."
                if "torch loop" in loops
                else "torch loop missing."
            )
        )
    return out


# -------------------------------------------------------------- findings


def torch_findings(results: list[dict]) -> list[str]:
    """Where PyTorch's fused kernel wins at defaults, and by how much; what would close it."""
    wins, losses, even = [], [], []
    compile_status = None
    for (config, cell, mode), rows in groups(results).items():
        eager, compiled = torch_rows(rows)
        if compiled is not None and not ok(compiled):
            compile_status = compiled["status"]
        if not ok(eager) or not ok(rows.get("lstmjax")):
            continue
        r = eager["min_ratio_vs_lstmjax"]
        where = f"{config} {cell} {mode}"
        if r < 1 - NOISE:
            wins.append(f"{where} (lstmjax takes {1 / r:.2f}x torch's time)")
        elif r > 1 + NOISE:
            losses.append(f"{where} ({r:.2f}x)")
        else:
            even.append(f"{where} ({r:.2f})")
    out = []
    if wins:
        out.append(
            "- **PyTorch is faster at its defaults** for " + "; ".join(wins) + ". PyTorch's "
            "CPU LSTM is one fused oneDNN kernel per layer over the whole sequence "
            "(`aten::mkldnn_rnn_layer`, forward and backward; its GRU and RNN are not fused), "
            "where XLA runs a while loop of small kernels per step. What would close the gap: "
            "a fused recurrent kernel (a custom call, as oneDNN and cuDNN have), the "
            "parallel-in-time methods (fewer sequential steps, each larger), or a GPU."
        )
    if losses:
        out.append(
            "- lstmjax is faster than PyTorch (torch / lstmjax) for " + "; ".join(losses) + "."
        )
    if even:
        out.append(
            f"- Even within noise (±{100 * NOISE:.0f}%, torch / lstmjax): " + "; ".join(even) + "."
        )
    if compile_status:
        out.append(f"- `torch.compile`: {compile_status.removeprefix('missing: ')}.")
    return out


def tuning_findings(results: list[dict]) -> list[str]:
    """For each tuned profile: the largest change it made to any implementation."""

    def key(r: dict) -> tuple:
        return r["config"], r["cell"], r["mode"], r["impl"]

    base = {key(r): r for r in results if r["profile"] == "default"}
    out = []
    for p in tuned_profiles(results):
        changes = []
        for r in results:
            if r["profile"] == p and ok(r) and ok(base.get(key(r))):
                changes.append((r["min_ms"] / base[key(r)]["min_ms"], key(r)))
        if not changes:
            continue
        fast, slow = min(changes), max(changes)
        out.append(
            f"- `{p}` against default (min ms, tuned / default): fastest change "
            f"{fast[0]:.2f} ({' '.join(fast[1][:3])}, {fast[1][3]}), slowest {slow[0]:.2f} "
            f"({' '.join(slow[1][:3])}, {slow[1][3]})."
        )
    return out


# -------------------------------------------------------------- documents


def step_markdown(doc: dict) -> list[str]:
    res = doc["results"]
    lines = ["## Step mode", "", *run_lines(doc, "Run"), "", "Profiles:", *profile_lines(doc)]
    title = "Summary at defaults (ratios of minima; above 1: lstmjax is faster)"
    if doc["verdict"]["busy"]:
        title += ": busy machine, not a headline"
    lines += ["", f"### {title}", ""]
    lines += summary_table(res)
    lines += ["", "### Findings", ""]
    if doc["verdict"]["busy"]:
        lines += [
            "Busy machine: these describe the implementations under that load, not on a quiet "
            "machine. (PyTorch's OpenMP workers spin while they wait at its default wait "
            "policy, which costs most when the cores are shared: compare the `passive` "
            "profile.)",
            "",
        ]
    lines += [*torch_findings(res), *tuning_findings(res)]
    if tuning_table(res):
        lines += ["", "### Default and tuned, every implementation (min ms)", ""]
        lines += tuning_table(res)
    lines += ["", "### Every implementation", "", *every_table(res)]
    return lines


def loop_markdown(doc: dict) -> list[str]:
    lines = ["## Loop mode (end-to-end training)", "", *run_lines(doc, "Run"), ""]
    lines += [*loop_lines(doc), "", *loop_table(doc), "", *fit_overhead_lines(doc)]
    return lines


def benchmark_markdown(step_doc: dict | None, loop_doc: dict | None) -> str:
    lines = [
        "# lstmjax benchmark",
        "",
        "Written by `benchmarks/benchmark.py` from `benchmark.json` and `benchmark_loop.json` "
        "(do not edit by hand). Every implementation runs at its own defaults (profile "
        "`default`: no tuning variable set); tuned profiles run in their own processes, beside "
        "it. Ratios = implementation's time / lstmjax's time in the same process, of the minima "
        "(above 1: lstmjax is faster). GFLOP/s (of the median) counts the matmuls; roofline = a "
        "jitted loop of the recurrent matmul alone at the same shapes.",
    ]
    if step_doc is not None:
        lines += ["", *step_markdown(step_doc)]
    if loop_doc is not None:
        lines += ["", *loop_markdown(loop_doc)]
    return "\n".join(lines) + "\n"

"""Benchmark: lstmjax against the JAX peers, PyTorch and a hand-written floor.

    python benchmarks/benchmark.py [--mode step|loop|parallel|report] [--quick]
        [--cell lstm,gru,rnn] [--config small,medium,long,wide]
        [--parts train,infer,memory] [--variants autodiff,remat,...|all]
        [--profiles default,passive,1-thread] [--out DIR]

Modes:
  step      (default) one training step (forward, BPTT, Adam; many-to-one MSE
            on the last hidden state) and the forward pass alone (`--parts`
            train, infer), and peak memory against T with and without remat
            (`--parts memory`). See `_bench_step.py`, `_bench_memory.py`.
  loop      end-to-end training: `train.fit` at its defaults against a bare
            Python loop over the same jitted step and an idiomatic PyTorch
            loop, on the same batches (`_bench_loop.py`).
  parallel  the parallel-in-time study (`_bench_parallel.py`; the remaining
            arguments are passed to its `main`).
  report    rewrite DIR/benchmark.md and the README's performance block from
            the JSON in DIR (default docs/results), without measuring.

Every implementation runs at its own defaults: each environment profile of
`_bench_env.py` runs in its own process, "default" with every tuning variable
(OpenMP, XLA flags, malloc) removed, and each tuned profile beside it for
every implementation alike. The JSON records the machine's state (load
before and after, the other processes' share of the CPUs, date, versions);
a busy machine gets no headline, and the reports say so.

Writes DIR/benchmark.json (step), DIR/benchmark_loop.json (loop),
DIR/benchmark_memory.json, .md and .png (memory), and DIR/benchmark.md from
whichever of the first two are present.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import _bench_env as env  # no JAX or torch at import: workers choose the env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MODES = ("step", "loop", "parallel", "report")
PARTS = ("train", "infer", "memory")
CELLS = ("lstm", "gru", "rnn")
CONFIG_NAMES = ("small", "medium", "long", "wide")
DEFAULT_RESULTS = ROOT / "docs" / "results"


def headline_command(mode: str) -> str:
    """The command line that produces the shipped results of `mode`."""
    out = "--out docs/results"
    if mode == "loop":
        return f"python benchmarks/benchmark.py --mode loop {out}"
    return f"python benchmarks/benchmark.py --parts train,infer {out}"


# --------------------------------------------------------------- workers


def run_worker(kind: str, profile: str, argv: list[str]) -> dict:
    """Run `benchmark.py --worker kind` in a fresh process with `profile`'s environment."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "worker.json"
        cmd = [sys.executable, __file__, "--worker", kind, "--profile", profile]
        cmd += [*argv, "--worker-out", str(out)]
        print(f"[{kind}] profile {profile}: {' '.join(argv)}", flush=True)
        proc = subprocess.run(cmd, env=env.profile_env(profile), check=False)
        if proc.returncode != 0:
            raise SystemExit(
                f"benchmark worker failed ({kind}, profile {profile}): rc {proc.returncode}"
            )
        return json.loads(out.read_text())


def worker_main(args: argparse.Namespace) -> None:
    """Measure in this process (its environment is the profile's) and write the JSON part."""
    meter = env.start_meter()
    part: dict = {"profile": args.profile, "env_set": env.PROFILES[args.profile]}
    try:
        import torch

        part["torch_threads"] = torch.get_num_threads()
    except ImportError:
        part["torch_threads"] = None  # the torch rows say "missing"
    part["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")  # as this process saw it
    if args.worker == "step":
        import _bench_step as step

        configs = step.QUICK_CONFIGS if args.quick else step.CONFIGS
        part["results"] = step.run_speed(
            {c: configs[c] for c in args.config},
            args.cell,
            [p for p in args.parts if p != "memory"],
            args.variants if args.profile == "default" else [],
            step.QUICK if args.quick else step.FULL,
        )
    else:
        import _bench_loop as loop

        s = loop.QUICK_LOOP_SHAPE if args.quick else loop.LOOP_SHAPE
        part |= loop.run_loops(s, loop.QUICK_LOOP if args.quick else loop.FULL_LOOP)
    part["state"] = env.finish(meter)
    Path(args.worker_out).write_text(json.dumps(part))


def header(args: argparse.Namespace, mode: str) -> dict:
    return {
        "mode": mode,
        "quick": args.quick,
        "command": "python benchmarks/benchmark.py " + " ".join(args.argv),
        "headline_command": headline_command(mode),
        "profiles": {p: env.PROFILES[p] for p in args.profiles},
        "removed_from_environment": env.removed_vars(),
        "machine": env.machine_info(),
    }


def warn_if_busy(meter: env.Meter) -> None:
    limit = env.MAX_LOAD_PER_CORE * env.cores()
    if meter.load[0] > limit:
        print(
            f"machine busy now (load {meter.load[0]:.2f} > {limit:.2f}): measuring anyway, "
            "but this run will give no headline.",
            flush=True,
        )


def finish_doc(doc: dict, meter: env.Meter) -> dict:
    doc["state"] = env.finish(meter)
    doc["verdict"] = env.verdict(doc["state"], doc["machine"]["cpus_available"])
    if doc["verdict"]["busy"]:
        print("machine busy: " + "; ".join(doc["verdict"]["reasons"]), flush=True)
        print("no headline will be written from this run.", flush=True)
    return doc


# ------------------------------------------------------------------ modes


def step_mode(args: argparse.Namespace, out: Path) -> None:
    meter = env.start_meter()
    warn_if_busy(meter)
    doc = header(args, "step")
    speed = [p for p in args.parts if p != "memory"]
    if speed:
        workers = []
        for i, config in enumerate(args.config):
            # The profiles take turns going first, so that drift in the
            # machine's load does not always favour the same one.
            k = i % len(args.profiles)
            for profile in args.profiles[k:] + args.profiles[:k]:
                argv = ["--config", config, "--cell", ",".join(args.cell)]
                argv += ["--parts", ",".join(speed), "--variants", ",".join(args.variants)]
                workers.append(run_worker("step", profile, argv + ["--quick"] * args.quick))
        doc["workers"] = [{k: w[k] for k in w if k != "results"} for w in workers]
        doc["results"] = [r | {"profile": w["profile"]} for w in workers for r in w["results"]]
        (out / "benchmark.json").write_text(json.dumps(finish_doc(doc, meter), indent=1))
    if "memory" in args.parts:
        import _bench_memory as memory
        from _bench_step import FULL

        m_meter = env.start_meter()
        points = memory.run_memory(args.quick, 1 if args.quick else FULL.memory_reps, __file__,
                                   env.profile_env("default"))  # fmt: skip
        mdoc = header(args, "memory") | {"shape": memory.MEMORY_SHAPE._asdict(), "points": points}
        (out / "benchmark_memory.json").write_text(json.dumps(finish_doc(mdoc, m_meter), indent=1))
        (out / "benchmark_memory.md").write_text(memory.memory_markdown(points))
        memory.memory_plot(points, out / "benchmark_memory.png")


def loop_mode(args: argparse.Namespace, out: Path) -> None:
    meter = env.start_meter()
    warn_if_busy(meter)
    doc = header(args, "loop")
    doc["runs"] = [run_worker("loop", p, ["--quick"] * args.quick) for p in args.profiles]
    (out / "benchmark_loop.json").write_text(json.dumps(finish_doc(doc, meter), indent=1))


def parallel_mode(argv: list[str]) -> None:
    try:
        module = importlib.import_module("_bench_parallel")
    except ModuleNotFoundError as e:
        if e.name != "_bench_parallel":
            raise
        raise SystemExit(
            "benchmark.py --mode parallel: parallel mode is not available yet "
            f"(benchmarks/_bench_parallel.py is absent from {HERE})."
        ) from None
    module.main(argv)


def write_reports(results: Path, readme: Path | None) -> None:
    import _bench_readme as readme_block
    import _bench_report as report

    step_doc, loop_doc = report.load(results)
    (results / "benchmark.md").write_text(report.benchmark_markdown(step_doc, loop_doc))
    if readme is not None:
        readme.write_text(readme_block.update(readme.read_text(), step_doc, loop_doc))
        print(f"updated the performance block of {readme}")


# -------------------------------------------------------------------- main


def csv(value: str, allowed, p: argparse.ArgumentParser, flag: str) -> list[str]:
    values = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad:
        p.error(f"{flag}: unknown {bad}; choose from {list(allowed)}")
    return values


def parse(argv: list[str] | None) -> argparse.Namespace:
    import _bench_peers as peers

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", default="step", choices=MODES)
    p.add_argument("--quick", action="store_true", help="tiny shapes, one repetition")
    p.add_argument("--cell", default=",".join(CELLS))
    p.add_argument("--config", default=",".join(CONFIG_NAMES))
    p.add_argument("--parts", default=",".join(PARTS), help="of step mode: train,infer,memory")
    p.add_argument(
        "--variants",
        default="",
        help=f"lstmjax technique variants to add, from {','.join(peers.VARIANTS)} (or 'all')",
    )
    p.add_argument(
        "--profiles",
        default=",".join(env.PROFILES),
        help="environment profiles; 'default' (every tuning variable removed) always runs",
    )
    p.add_argument(
        "--out", default=None, help="results folder (default results/; report: docs/results)"
    )
    p.add_argument(
        "--readme", default=str(ROOT / "README.md"), help="report mode: README to update"
    )
    p.add_argument("--worker", choices=("step", "loop"), help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument(
        "--profile", default="default", choices=list(env.PROFILES), help=argparse.SUPPRESS
    )
    p.add_argument("--memory-point", help=argparse.SUPPRESS)
    p.add_argument("--memory-reps", type=int, default=2, help=argparse.SUPPRESS)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--mode")
    known, rest = pre.parse_known_args(argv)
    if known.mode == "parallel":  # the rest of the line is the parallel study's own
        return argparse.Namespace(mode="parallel", argv=rest)
    args = p.parse_args(argv)
    args.argv = argv
    args.cell = csv(args.cell, CELLS, p, "--cell")
    args.config = csv(args.config, CONFIG_NAMES, p, "--config")
    args.parts = csv(args.parts, PARTS, p, "--parts")
    args.profiles = ["default"] + [
        v for v in csv(args.profiles, env.PROFILES, p, "--profiles") if v != "default"
    ]
    variants = csv(args.variants, (*peers.VARIANTS, "all"), p, "--variants")
    args.variants = list(peers.VARIANTS) if variants == ["all"] else variants
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.mode == "parallel":
        parallel_mode(args.argv)
        return
    if args.memory_point:
        import _bench_memory as memory

        T, remat = (int(v) for v in args.memory_point.split(","))
        print(json.dumps(memory.memory_point(T, bool(remat), args.memory_reps)))
        return
    if args.worker:
        worker_main(args)
        return
    if args.mode == "report":
        write_reports(Path(args.out or DEFAULT_RESULTS), Path(args.readme))
        return
    out = Path(args.out or "results")
    out.mkdir(parents=True, exist_ok=True)
    (step_mode if args.mode == "step" else loop_mode)(args, out)
    write_reports(out, None)
    print(f"wrote {out}/")


if __name__ == "__main__":
    main()

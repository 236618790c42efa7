"""The benchmark's environments and the state of the machine it ran on.

Speed depends on settings outside the code: OpenMP's wait policy and thread
count (PyTorch), XLA's flags (JAX), the allocator. A fair comparison runs
every implementation with the settings its users get out of the box (the
"default" profile: the variables below removed from the environment), and
shows any tuned profile beside it for every implementation alike; each
profile runs in its own process, since these settings are read at import.

The machine state says whether a run may be believed: the load average
before and after, and the share of the CPUs that *other* processes used
while it ran (from /proc/stat, less this process and its children).
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path
from typing import NamedTuple

# Variables that change the speed of some implementation. The default
# profile removes them (and records which were set), so that a user's shell
# cannot tune one peer behind the reader's back.
TUNING_VARS = (
    "OMP_WAIT_POLICY",
    "OMP_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "KMP_BLOCKTIME",
    "KMP_AFFINITY",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "XLA_FLAGS",
    "LD_PRELOAD",
    "MALLOC_ARENA_MAX",
    "MALLOC_TRIM_THRESHOLD_",
)

# Profile name -> variables set on top of the default environment.
PROFILES: dict[str, dict[str, str]] = {
    "default": {},
    # Idle OpenMP workers sleep instead of spinning (PyTorch's intra-op pool).
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    # One thread for everyone: PyTorch's OpenMP pool and XLA:CPU's Eigen pool.
    "1-thread": {
        "OMP_NUM_THREADS": "1",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    },
}
TUNED = tuple(name for name in PROFILES if name != "default")

# A run is "busy", and gives no headline, above either limit (per core: 1.5
# on 2 cores; other processes using a quarter of the machine).
MAX_LOAD_PER_CORE = 0.75
MAX_OTHER_SHARE = 0.25

LIBRARIES = ("jax", "jaxlib", "numpy", "optax", "flax", "equinox", "haiku", "torch")


def profile_env(name: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of profile `name`: `base` (os.environ) less TUNING_VARS, plus its own."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {list(PROFILES)}")
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in TUNING_VARS}
    return env | PROFILES[name]


def removed_vars(base: dict[str, str] | None = None) -> dict[str, str]:
    """The tuning variables the caller's environment had set (and the profiles remove)."""
    env = os.environ if base is None else base
    return {k: env[k] for k in TUNING_VARS if k in env}


# ------------------------------------------------------------ machine state


def cores() -> int:
    return len(os.sched_getaffinity(0))


def busy_jiffies() -> int:
    """Clock ticks all CPUs spent busy since boot (every /proc/stat field but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def own_cpu_s() -> float:
    """CPU seconds of this process and of its finished (waited-for) children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Meter(NamedTuple):
    """A reading taken when a run starts; `finish` turns it into the run's machine state."""

    wall: float
    busy: int
    own: float
    load: tuple[float, float, float]
    date: str


def start_meter() -> Meter:
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return Meter(time.perf_counter(), busy_jiffies(), own_cpu_s(), os.getloadavg(), now)


def finish(meter: Meter) -> dict:
    """Load before and after, and the other processes' mean share of the CPUs during the run.

    The share is (busy CPU time of the machine - this process tree's CPU time)
    / (wall time x cores); the load after includes this run itself.
    """
    wall = time.perf_counter() - meter.wall
    busy_s = (busy_jiffies() - meter.busy) / os.sysconf("SC_CLK_TCK")
    own = own_cpu_s() - meter.own
    n = os.cpu_count() or 1  # /proc/stat counts every CPU of the machine
    other = max(0.0, busy_s - own) / (wall * n) if wall > 0 else 0.0
    return {
        "date": meter.date,
        "wall_s": wall,
        "load_before": list(meter.load),
        "load_after": list(os.getloadavg()),
        "own_cpu_share": own / (wall * n) if wall > 0 else 0.0,
        "other_cpu_share": other,
    }


def verdict(state: dict, n_cores: int) -> dict:
    """Whether the run was busy, by the load before it and the other processes' share during it.

    The load after is not used: it counts the benchmark's own threads.
    """
    max_load = MAX_LOAD_PER_CORE * n_cores
    reasons = []
    if state["load_before"][0] > max_load:
        reasons.append(f"load {state['load_before'][0]:.2f} before the run > {max_load:.2f}")
    if state["other_cpu_share"] > MAX_OTHER_SHARE:
        reasons.append(
            f"other processes used {100 * state['other_cpu_share']:.0f}% of the CPUs "
            f"> {100 * MAX_OTHER_SHARE:.0f}%"
        )
    return {
        "busy": bool(reasons),
        "reasons": reasons,
        "max_load": max_load,
        "max_other_share": MAX_OTHER_SHARE,
    }


def combine(states: list[dict]) -> dict:
    """The worst of several runs' machine states (the maximum of each figure)."""
    return {
        "date": min(s["date"] for s in states),
        "wall_s": sum(s["wall_s"] for s in states),
        "load_before": [max(s["load_before"][i] for s in states) for i in range(3)],
        "load_after": [max(s["load_after"][i] for s in states) for i in range(3)],
        "own_cpu_share": max(s["own_cpu_share"] for s in states),
        "other_cpu_share": max(s["other_cpu_share"] for s in states),
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for module in LIBRARIES:
        try:
            out[module] = __import__(module).__version__
        except ImportError:
            out[module] = "missing"
    return out


def machine_info() -> dict:
    import jax

    return {
        "platform": platform.platform(),
        "processor": cpu_name(),
        "cpus_available": cores(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "versions": versions(),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

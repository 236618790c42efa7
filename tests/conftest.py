"""Test set-up shared by every test module.

Rank promotion raises, so an accidental broadcast between arrays of
different ranks fails loudly instead of giving a silently wrong shape.
float64 is enabled: the exactness claims (BPTT, finite differences) are
checked in double precision; tests that need float32 ask for it.

The unit tier (`-m 'not integration'`, the default) compiles its programs
with LLVM's optimisation level 0 (`--xla_backend_optimization_level=0`,
appended to any XLA_FLAGS the user set). Its time goes to compiling thousands
of small programs, each run a few times on tiny arrays: the optimisation
passes were about 30% of each compilation and buy nothing there. The HLO
passes (fusion, layout, the algebra XLA rewrites) still run, and no option
here changes floating-point semantics (XLA:CPU never enables fast math by
default), so every tolerance stands. Any other selection, the integration
tier included, runs at XLA's default level, as users do: its tests compare
bit for bit with the processes they start, which get the caller's XLA_FLAGS
unchanged, and code differently optimised may round differently.
"""

import os
from importlib.util import find_spec

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

# `pytest --compile-counts` (tests/compile_counts.py): XLA compilations per module.
from compile_counts import pytest_addoption  # noqa: E402, F401
from compile_counts import pytest_configure as _configure_compile_counts  # noqa: E402


def _start_xla(unit_tier: bool) -> None:
    """Start XLA's backend, at optimisation level 0 for the unit tier (see above)."""
    if not unit_tier:
        jax.devices()
        return
    callers = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = f"{callers or ''} --xla_backend_optimization_level=0".strip()
    try:
        jax.devices()  # XLA reads its flags once, as its backend starts
    finally:
        if callers is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = callers


def pytest_configure(config):
    _start_xla(unit_tier=config.getoption("markexpr", "").strip() == "not integration")
    _configure_compile_counts(config)


import lstmjax as lj  # noqa: E402

# The two ways `unroll` lays out the sequential scan: what XLA:CPU gets by
# default, and what GPU/TPU users get (the input projection hoisted out of
# the loop, no column blocks). Every cell is checked in both (with lengths
# and reverse) by test_conformance.py::test_hoisted_and_per_step_projection_agree.
PLACEMENTS = {
    "cpu_layout": {"projection": "per_step", "column_blocks": True},
    "accelerator_layout": {"projection": "hoisted", "column_blocks": False},
}


# torch is optional (it is in no extra): the parity tests skip, saying why, where it is absent.
TORCH_MISSING = (
    "torch is not installed; the parity tests need its CPU build: "
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
)
needs_torch = pytest.mark.skipif(find_spec("torch") is None, reason=TORCH_MISSING)


def scan_method(layout: str, **options) -> lj.Scan:
    """`lj.Scan` with the placement `layout` (see PLACEMENTS) and other Scan options."""
    return lj.Scan(**PLACEMENTS[layout], **options)


def unroll_with(layout: str):
    """`lj.unroll` through `lj.Scan` with one explicit placement; `unroll=` and `remat=`
    are the Scan's options (so that the suites read as they did)."""

    def run(*args, unroll=1, remat=False, **kwargs):
        return lj.unroll(*args, method=scan_method(layout, unroll=unroll, remat=remat), **kwargs)

    return run


@pytest.fixture
def unroll():
    """`lj.unroll` through `lj.Scan` with the CPU layout written out.

    The suites ran every case in both PLACEMENTS once, doubling them; that the
    two layouts give the same values and gradients is proved for every cell by
    test_conformance.py::test_hoisted_and_per_step_projection_agree and
    test_split_accumulation.py, and the lengths and resets suites still run
    the accelerator layout in their own cases.
    """
    return unroll_with("cpu_layout")


@pytest.fixture(autouse=True)
def _highest_matmul_precision_for_parity(request):
    """float32 parity tests compare against torch/Flax at 1e-5: on GPUs with TF32
    matmuls (10-bit mantissa) that would fail for the wrong reason, so pin the
    precision of every JAX matmul in those modules to full float32."""
    if "parity" not in request.module.__name__:
        yield
        return
    with jax.default_matmul_precision("highest"):
        yield


def _memory_maps() -> tuple[int, int]:
    """(maps this process holds, the kernel's limit), or (0, 1) where /proc does not say."""
    try:
        with open("/proc/self/maps") as maps:
            used = sum(1 for _ in maps)
        with open("/proc/sys/vm/max_map_count") as limit:
            return used, int(limit.read())
    except OSError:
        return 0, 1


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs_under_pressure():
    """Drop JAX's compiled programs after a test module, only when memory maps run short.

    The suite compiles thousands of small programs in one process; kept alive
    they can exhaust the kernel's memory-map limit (vm.max_map_count, 65,530 by
    default), and XLA's compiler then crashes with a segmentation fault. Clearing
    after every module threw away programs later modules reuse (equal cells share
    compiled code), so the caches are cleared only past half the limit, and past
    30,000 maps however high the limit was raised (CI raises it), which bounds the
    memory the kept programs hold.
    """
    yield
    used, limit = _memory_maps()
    if used > min(limit // 2, 30_000):
        jax.clear_caches()

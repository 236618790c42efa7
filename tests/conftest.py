"""Test set-up shared by every test module.

Rank promotion raises, so an accidental broadcast between arrays of
different ranks fails loudly instead of giving a silently wrong shape.
float64 is enabled: the exactness claims (BPTT, finite differences) are
checked in double precision; tests that need float32 ask for it.
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

import lstmjax as lj  # noqa: E402

# The two ways `unroll` lays out the sequential scan: what XLA:CPU gets by
# default, and what GPU/TPU users get (the input projection hoisted out of
# the loop, no column blocks). Suites that take the `unroll` fixture run
# with both, so the accelerator path is tested on this CPU too.
PLACEMENTS = {
    "cpu_layout": {"projection": "per_step", "column_blocks": True},
    "accelerator_layout": {"projection": "hoisted", "column_blocks": False},
}


def scan_method(layout: str, **options) -> lj.Scan:
    """`lj.Scan` with the placement `layout` (see PLACEMENTS) and other Scan options."""
    return lj.Scan(**PLACEMENTS[layout], **options)


def unroll_with(layout: str):
    """`lj.unroll` through `lj.Scan` with one explicit placement; `unroll=` and `remat=`
    are the Scan's options (so that the suites read as they did)."""

    def run(*args, unroll=1, remat=False, **kwargs):
        return lj.unroll(*args, method=scan_method(layout, unroll=unroll, remat=remat), **kwargs)

    return run


@pytest.fixture(params=sorted(PLACEMENTS))
def unroll(request):
    """`lj.unroll` with one explicit placement (see PLACEMENTS)."""
    return unroll_with(request.param)


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


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    The suite compiles thousands of small programs in one process; kept alive
    they exhaust the kernel's memory-map limit (vm.max_map_count, 65,530 by
    default), and XLA's compiler then crashes with a segmentation fault.
    """
    yield
    jax.clear_caches()

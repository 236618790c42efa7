"""How `unroll` evaluates the steps: the strategy objects and the one "auto" resolver.

Each strategy is a small frozen option object that validates its own fields
when it is built and lives in the file of its strategy:

- `Scan(unroll, remat, projection, column_blocks)`: the sequential
  `lax.scan` (`_scan.py`);
- `Affine(algorithm, chunk)`: the exact parallel pass of cells affine in
  their carry (`_affine.py`);
- `Newton(...)`, `QuasiNewton(...)` (`_newton.py`) and `ELK(...)`
  (`_elk.py`): parallel-in-time solvers for any cell;
- `Fused(threads, fallback)`: the whole sequence in one compiled CPU
  kernel for the plain LSTM and GRU (`_fused.py`), or its fallback scan
  where the kernel cannot run a call.

The strings "scan", "affine", "newton", "quasi_newton", "elk" and "fused" are
shorthands for each strategy at its defaults. "auto" (the method, or an
"auto" field of an option object) is resolved here, once, from the platform
of the arrays (`resolve`): arrays on a GPU get the accelerator choices even
in a process whose default backend is the CPU.
"""

from __future__ import annotations

from typing import Optional, Union

import jax

from lstmjax._affine import Affine
from lstmjax._arrays import is_concrete
from lstmjax._cell import Cell
from lstmjax._elk import ELK
from lstmjax._fused import Call, Fused, unsupported
from lstmjax._newton import Newton, QuasiNewton
from lstmjax._scan import Scan

Method = Union[Scan, Affine, Newton, QuasiNewton, ELK, Fused]
STRATEGIES = (Scan, Affine, Newton, QuasiNewton, ELK, Fused)
SHORTHANDS = {
    "scan": Scan,
    "affine": Affine,
    "newton": Newton,
    "quasi_newton": QuasiNewton,
    "elk": ELK,
    "fused": Fused,
}


def as_method(method, where: str) -> Union[str, Method]:
    """`method` checked: "auto", a shorthand (returned as its default object), or an object."""
    if isinstance(method, STRATEGIES):
        return method
    if isinstance(method, str) and method == "auto":
        return method
    if isinstance(method, str) and method in SHORTHANDS:
        return SHORTHANDS[method]()
    if isinstance(method, type) and method in STRATEGIES:
        raise TypeError(
            f"{where}: method must be an option object, e.g. lj.{method.__name__}(); got the "
            f"class lj.{method.__name__} itself."
        )
    raise ValueError(
        f"{where}: method must be 'auto', one of {sorted(SHORTHANDS)}, or an option object "
        f"(lj.Scan(...), lj.Affine(...), lj.Newton(...), lj.QuasiNewton(...), lj.ELK(...), "
        f"lj.Fused(...)); "
        f"got {method!r}."
    )


def platform_of(*trees) -> str:
    """The platform ("cpu", "gpu", "tpu") of the first concrete array in `trees`.

    Inside `jit` every array is a tracer with no device; then the default
    backend decides, which is where `jit` places the computation unless told
    otherwise.
    """
    for leaf in jax.tree_util.tree_leaves(trees):
        if isinstance(leaf, jax.Array) and is_concrete(leaf):
            return next(iter(leaf.devices())).platform
    return jax.default_backend()


def resolve(
    method: Union[str, Method], cell: Cell, platform: str, call: Optional[Call] = None
) -> Method:
    """The strategy with every "auto" decided for `platform`.

    The method "auto" is `Affine()` for cells affine in their carry
    (`Cell.linear_in_carry`: the min cells; `Cell.stabilised_linear`: the
    mLSTM); `Fused()` for the calls its compiled kernel runs (the plain LSTM
    and GRU on the CPU, `_fused.unsupported`), chosen silently, and `Scan()`
    for everything else. An explicit `Fused` becomes its fallback scan where
    the kernel cannot run `call` (warned once per reason); a `call` of None
    means float32 inputs without tangents.
    """
    call = call if call is not None else Call("float32", False)
    if isinstance(method, str):
        if cell.linear_in_carry or cell.stabilised_linear:
            method = Affine()
        elif not unsupported(platform, cell, call):
            return Fused()
        else:
            method = Scan()
    if isinstance(method, Affine):  # its CPU chunk depends on the cell's carry
        return method.resolve(platform, cell)
    if isinstance(method, Fused):
        return method.resolve(platform, cell, call)
    return method.resolve(platform)

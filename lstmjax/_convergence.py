"""How a parallel solve ended (`ParallelInfo`), and the loud answer when it did not converge.

Shared by the solvers' door (`_unroll.py`): a concrete failure raises with
advice that names only the other methods; under a trace, where nothing can
be raised, every output, carry entry and derivative becomes NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._typing import Array, Carry


class ParallelInfo(NamedTuple):
    """How a parallel solve ended."""

    iterations: Array  # int32 [], the iterations used
    residual: Array  # [], the final max_t |h_t - F_t(h_{t-1})|
    converged: Array  # bool [], residual <= tol


def raise_if_not_converged(
    info: ParallelInfo,
    ys: Array,
    carry: Carry,
    method: Any,
    where: str,
    nonfinite_inputs: Callable[[], str] = lambda: "",
):
    """Raise when the solve is known (concrete) not to have converged; under `jit`, NaN outputs.

    Under `jit` (or any trace where `info` is abstract) nothing can be raised
    at run time, so a non-converged solve returns NaN in every output and
    carry entry, and in every derivative that flows through them (the
    outputs are multiplied by NaN, not replaced: a replacement would pass
    zero cotangents back): loud, never a plausible wrong number.

    `nonfinite_inputs`: called only on failure; names NaN or inf in the
    inputs ("" when there is none), which the message then reports first.
    """
    try:
        converged = bool(info.converged)
    except jax.errors.ConcretizationTypeError:
        converged = None
    if converged is False:
        head = (
            f"{where}: method={method!r} did not converge: residual max|h_t - f(h_(t-1), x_t)| "
            f"= {float(info.residual):.3g} after {int(info.iterations)} iterations."
        )
        note = nonfinite_inputs()
        if note:
            head += f" {note}; check them, or use method='scan' for the scan's answer with them."
        others = "method='scan'" if method.shorthand == "newton" else "Newton or method='scan'"
        if method.shorthand != "elk":
            others = "method='elk' (damped) or " + others
        advice = "Otherwise raise" if note else "Raise"
        raise RuntimeError(
            f"{head} {advice} max_iters or tol, try {others}, or use lj.unroll_parallel to "
            "inspect the report."
        )
    if converged is None:
        factor = jnp.where(info.converged, 1.0, jnp.nan)

        def poison(a):
            return a * factor.astype(a.dtype)

        ys = poison(ys)
        carry = jax.tree_util.tree_map(poison, carry)
    return ys, carry

"""`unroll_parallel`: a parallel-in-time solve with its convergence report.

`lj.unroll(method="newton" | "quasi_newton" | "elk")` runs the same solver
(`_newton.py`) and raises when it has not converged; `unroll_parallel`
returns the report instead, as `info`.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from lstmjax import _newton, _sequence
from lstmjax._cell import Array, Carry, Cell, Params, check_carry
from lstmjax._checks import (
    DEFAULT_TOL,
    check_choice,
    check_jacobian_memory,
    check_parallel_options,
    check_real,
)
from lstmjax._newton import ParallelInfo

SOLVERS = ("newton", "quasi_newton", "elk")
DEFAULT_JACOBIAN_LIMIT = (
    2 * 2**30
)  # bytes: method="newton" refuses more (see check_jacobian_memory)


def make_options(
    method, max_iters, tol, damping, jacobian_limit, algorithm, T, B, carry0, dtype, where
) -> _newton.Options:
    """Checked solver options; tol None -> DEFAULT_TOL of the computation dtype."""
    check_choice("method", method, SOLVERS)
    if algorithm == "log":  # its inputs must be positive; a Newton step's are not
        raise ValueError(
            f'{where}: affine_algorithm="log" is for method="affine" only (it needs positive '
            f'coefficients, which a {method!r} step does not have); use "auto", '
            '"sequential", "associative" or "blocked".'
        )
    max_iters, tol = check_parallel_options(method, max_iters, tol, T, where)
    if tol is None:
        tol = DEFAULT_TOL.get(jnp.dtype(dtype).name, 1e-6)
    damping = check_real("damping", damping)
    if not damping >= 0:
        raise ValueError(f"{where}: damping must be >= 0; got {damping!r}.")
    if method == "newton":
        N = sum(leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(carry0))
        check_jacobian_memory(T, B, N, jnp.dtype(dtype).itemsize, jacobian_limit, where)
    return _newton.Options(method, max_iters, tol, damping, algorithm)


def raise_if_not_converged(info: ParallelInfo, ys: Array, carry: Carry, method: str, where: str):
    """Raise when the solve is known (concrete) not to have converged; under `jit`, NaN outputs.

    Under `jit` (or any trace where `info` is abstract) nothing can be raised
    at run time, so a non-converged solve returns NaN in every output and
    carry entry: loud, never a plausible wrong number.
    """
    try:
        converged = bool(info.converged)
    except jax.errors.ConcretizationTypeError:
        converged = None
    if converged is False:
        raise RuntimeError(
            f"{where}: method={method!r} did not converge: residual max|h_t - f(h_(t-1), x_t)| "
            f"= {float(info.residual):.3g} after {int(info.iterations)} iterations. Raise "
            f"max_iters or tol, try method='elk' (damped) or 'scan', or use lj.unroll_parallel "
            f"to inspect the report."
        )
    if converged is None:

        def poison(a):
            return jnp.where(info.converged, a, jnp.full_like(a, jnp.nan))

        ys = poison(ys)
        carry = jax.tree_util.tree_map(poison, carry)
    return ys, carry


def unroll_parallel(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Optional[Carry] = None,
    *,
    lengths: Optional[Array] = None,
    resets: Optional[Array] = None,
    reverse: bool = False,
    time_major: bool = False,
    method: str = "quasi_newton",
    max_iters: Optional[int] = None,
    tol: Optional[float] = None,
    init: Optional[Carry] = None,
    damping: float = 0.01,
    jacobian_limit: int = DEFAULT_JACOBIAN_LIMIT,
    affine_algorithm: str = "auto",
) -> tuple[Array, Carry, ParallelInfo]:
    """Run `cell` over whole sequences at once by a Newton-type solve (DEER, quasi-DEER, ELK).

    The inputs mean what they mean in `lj.unroll` (same checks, masks,
    reverse within lengths, resets). At convergence the outputs equal
    `unroll(method="scan")` (to ~1e-10 in float64, ~1e-5 in float32).
    Gradients (`jax.grad`) are implicit: an adjoint recurrence at the
    solution, never backpropagation through the iterations (`_newton.py`).

    Args:
      method: "newton" (full Jacobians; memory O(T B N^2), N the carry's
        size), "quasi_newton" (default: diagonal Jacobians, O(T B N)) or
        "elk" (quasi-Newton damped by Levenberg-Marquardt, O(T B N)).
      max_iters: iteration cap; None: T (within which Newton and
        quasi-Newton are exact in exact arithmetic), 4 T + 20 for "elk".
      tol: stop at max_t |h_t - F_t(h_{t-1})| <= tol; None: by dtype
        (1e-12 float64, 1e-6 float32, 3e-3 float16, 3e-2 bfloat16).
      init: initial guess of every carry, leaves `[T, B, ...]` in processing
        order (for reverse=True: reversed within lengths); None: zeros.
        Not differentiated.
      damping: ELK's lambda (default 0.01; 0 is quasi-Newton; larger is
        more cautious and converges more slowly, linearly at a rate that
        grows with lambda).
      jacobian_limit: bytes "newton" may use for its Jacobians before it
        refuses with a message (default 2 GiB).
      affine_algorithm: the algorithm of every scan of the solve (the
        Newton steps, ELK's filter and smoother, the adjoint): "auto"
        (sequential on CPU, where it measured fastest; associative, depth
        O(log T), elsewhere), "sequential", "associative" or "blocked".

    Returns:
      `(ys, carry, info)`: as `unroll`, plus `ParallelInfo(iterations, residual,
      converged)`. A non-converged solve returns its last iterate.
    """
    from lstmjax._unroll import checked_inputs

    seq, T, B, dtype, lengths = checked_inputs(
        cell, params, xs, carry, lengths, resets, reverse, time_major, "unroll_parallel"
    )
    options = make_options(
        method, max_iters, tol, damping, jacobian_limit, affine_algorithm, T, B,
        seq.carry0, dtype, "unroll_parallel",
    )  # fmt: skip
    h_init = None
    if init is not None:
        expected = jax.eval_shape(lambda: jax.tree_util.tree_map(
            lambda c: jnp.zeros((T,) + c.shape, c.dtype), seq.carry0))  # fmt: skip
        init = check_carry(init, expected, "unroll_parallel (init)")
        h_init = _newton.ravel(jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), init))
    ys_t, carry, info = _newton.solve(cell, params, seq, options, h_init)
    return _sequence.finish(ys_t, lengths, reverse, time_major), carry, info

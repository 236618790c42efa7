"""Parallel-in-time solvers: the states as the root of one equation (DEER, quasi-DEER, ELK).

With the masked step F_t(h) = masked_recur(recur, params, h, px_t, valid_t,
reset_t, carry0) (the very map the sequential scan applies, so lengths,
resets and reverse mean the same), the states h = (h_0, ..., h_{T-1})
solve G(h)_t = h_t - F_t(h_{t-1}) = 0 with h_{-1} = carry0. One Newton
step linearises every F_t at the current guess and solves the *linear*
recurrence

    h_t = J_t h_{t-1} + (F_t(g_{t-1}) - J_t g_{t-1}),   J_t = dF_t/dh at g_{t-1},

with one affine scan (`_affine_scan.py`): depth O(log T) ("associative",
the default on accelerators) or T ("sequential", the CPU default, which
measured fastest there):

- "newton" (DEER, Lim et al. 2024): J_t the full Jacobian [N, N] (N the
  carry's size, 2H for an LSTM). Memory O(T B N^2), work per iteration
  O(T B N) jvps plus O(T B N^3) in the dense scan.
- "quasi_newton" (quasi-DEER, Gonzalez et al. 2024): only diag(J_t).
  Memory O(T B N) stored (O(T B N^2) transiently while the N jvps of each
  step are taken), scan work O(T B N).
- "elk" (Gonzalez et al. 2024): the quasi-Newton step damped by
  Levenberg-Marquardt, see `_elk.py`.

Each Newton-type iteration makes one more leading state exact (h_0 is
exact after the first, since h_{-1} = carry0 is known), so every method
reaches the sequential answer within T iterations in exact arithmetic;
`max_iters` defaults to T. The loop stops at `max|G(h)| <= tol`.

Derivatives are implicit (never through the iterations): differentiating
h_t = F_t(h_{t-1}) at the solution gives the tangent recurrence
dh_t = J_t dh_{t-1} + db_t (db_t: the change of F_t from the parameters,
inputs and carry0 at the states held fixed), a `jax.custom_jvp`. Forward
mode (`jvp`, `jacfwd`) evaluates it; reverse mode is JAX's transpose of
it, the adjoint recurrence backward in time, lambda_t = gbar_t +
J_{t+1}^T lambda_{t+1}, followed by one vectorised VJP of all the F_t.
"newton" solves both with the dense affine scan (parallel, O(T B N^2)
memory); the diagonal methods with a sequential scan of exact jvps, whose
transpose is a scan of exact VJPs (depth T, O(T B N) memory: the cost of
one BPTT pass), because their diagonal Jacobians are not the exact ones
the derivative needs.

A NaN input makes the scan's states NaN from that step to the end of its
sequence, or to the next reset; `residual` counts a state that is NaN on
both sides of h_t = F_t(h_{t-1}) as solved, and a reset's zero Jacobian
forgets a NaN state in the linear step (`_affine_scan.apply`), so the
solvers return the same NaN in that sequence alone and the others
converge as usual.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._affine_scan import ALGORITHMS, affine_scan, apply, default_algorithm, entering
from lstmjax._arrays import ravel, unraveler
from lstmjax._cell import Cell
from lstmjax._checks import check_positive, check_size
from lstmjax._convergence import ParallelInfo
from lstmjax._sequence import Sequences, masked_recur, zero_invalid
from lstmjax._typing import Array, Carry, Params

# Default residual tolerance of the solvers, by computation dtype: a few hundred
# ulps of an O(1) state, so that converged means equal to the sequential scan
# to ~1e-10 (float64) and ~1e-5 (float32).
DEFAULT_TOL = {"float64": 1e-12, "float32": 1e-6, "bfloat16": 3e-2, "float16": 3e-3}
DEFAULT_JACOBIAN_LIMIT = 2 * 2**30  # bytes: Newton refuses more (Newton.check_memory)


@dataclasses.dataclass(frozen=True)
class Solver:
    """The options every parallel-in-time solver shares (a base, not a strategy)."""

    max_iters: Optional[int] = None
    tol: Optional[float] = None
    algorithm: str = "auto"

    dense: ClassVar[bool] = False  # full Jacobians (Newton) or their diagonals
    shorthand: ClassVar[str] = ""

    def __post_init__(self):
        kind = type(self).__name__
        if not isinstance(self.algorithm, str):
            raise TypeError(
                f"{kind}: algorithm must be one of ['auto', 'sequential', 'associative', "
                f"'blocked']; got {self.algorithm!r} ({type(self.algorithm).__name__})."
            )
        # Numbers are stored as Python numbers (`_checks`' one rule for options), so
        # that equal options hash equal and share a compiled program.
        if self.max_iters is not None:
            self._set("max_iters", check_size(f"{kind}: max_iters", self.max_iters))
        if self.tol is not None:
            self._set("tol", check_positive(f"{kind}: tol", self.tol))
        if self.algorithm == "log":  # its inputs must be positive; a Newton step's are not
            raise ValueError(
                f'{kind}: algorithm="log" is for lj.Affine only (it needs positive '
                "coefficients, which a Newton-type step does not have); use 'auto', "
                "'sequential', 'associative' or 'blocked'."
            )
        if self.algorithm not in ("auto",) + ALGORITHMS:
            raise ValueError(
                f"{kind}: algorithm must be one of ['auto', 'sequential', 'associative', "
                f"'blocked']; got {self.algorithm!r}."
            )

    def _set(self, field: str, value) -> None:
        object.__setattr__(self, field, value)  # a frozen dataclass, during __post_init__

    def resolve(self, platform: str):
        """This solver with "auto" decided for `platform`."""
        if self.algorithm != "auto":
            return self
        return dataclasses.replace(self, algorithm=default_algorithm(platform))

    def default_max_iters(self, T: int) -> int:
        """Newton and quasi-Newton make one more leading state exact per iteration."""
        return max(T, 1)

    def check_memory(self, T: int, B: int, N: int, itemsize: int, where: str) -> None:
        """Solvers with O(T B N) memory need no check."""

    def update(self, J: Array, Fh: Array, h: Array, h0: Array) -> Array:
        """One iteration: the states of the recurrence linearised at the guess `h`."""
        return affine_scan(J, Fh - apply(J, entering(h, h0), self.dense), h0, self.algorithm)

    def settled(self, T: int, dtype) -> Solver:
        """max_iters and tol filled in for a sequence of T steps in `dtype`."""
        return dataclasses.replace(
            self,
            max_iters=self.max_iters or self.default_max_iters(T),
            tol=self.tol or DEFAULT_TOL.get(jnp.dtype(dtype).name, 1e-6),
        )

    def run(
        self, cell: Cell, params: Params, seq: Sequences, init: Optional[Array] = None
    ) -> tuple[Array, Carry, ParallelInfo]:
        """`(ys [T, B, O], carry, info)` in processing order (a resolved solver)."""
        T = seq.xs.shape[0]
        h0 = ravel(seq.carry0)
        self.check_memory(T, h0.shape[0], h0.shape[-1], h0.dtype.itemsize, "unroll")
        return solve(cell, params, seq, self.settled(T, h0.dtype), init)


@dataclasses.dataclass(frozen=True)
class Newton(Solver):
    """DEER (Lim et al. 2024): Newton's method with full Jacobians, memory O(T B N^2).

    Attributes:
      max_iters: iteration cap; None (default): T, within which Newton is
        exact in exact arithmetic.
      tol: stop at max_t |h_t - F_t(h_{t-1})| <= tol; None (default): by the
        computation dtype (1e-12 float64, 1e-6 float32, 3e-3 float16, 3e-2
        bfloat16).
      algorithm: the affine scans' algorithm: "auto" (default: "sequential"
        on CPU, "associative", depth O(log T), elsewhere), "sequential",
        "associative" or "blocked".
      jacobian_limit: bytes the Jacobians may take before the solve refuses
        with a message (default 2 GiB).
    """

    jacobian_limit: int = DEFAULT_JACOBIAN_LIMIT

    dense: ClassVar[bool] = True
    shorthand: ClassVar[str] = "newton"

    def __post_init__(self):
        super().__post_init__()
        self._set("jacobian_limit", check_size("Newton: jacobian_limit", self.jacobian_limit))

    def check_memory(self, T: int, B: int, N: int, itemsize: int, where: str) -> None:
        """Refuse a solve whose [T, B, N, N] Jacobians would not fit in `jacobian_limit`."""
        # The Jacobians, their associative-scan partial products (about one more
        # copy over all levels) and one copy in the adjoint pass.
        need = 3 * T * B * N * N * itemsize
        if need > self.jacobian_limit:
            raise ValueError(
                f"{where}: method=Newton keeps full Jacobians [T, B, N, N] = [{T}, {B}, {N}, "
                f"{N}] (about {need / 2**30:.2f} GiB with the scan's partial products), over "
                f"jacobian_limit = {self.jacobian_limit / 2**30:.2f} GiB. Use "
                "method='quasi_newton' or 'elk' (O(T B N) memory), a shorter sequence, or "
                "lj.Newton(jacobian_limit=...)."
            )


@dataclasses.dataclass(frozen=True)
class QuasiNewton(Solver):
    """quasi-DEER (Gonzalez et al. 2024): only the Jacobians' diagonals, memory O(T B N).

    Attributes:
      max_iters: iteration cap; None (default): T.
      tol: as `lj.Newton`'s; None (default): by dtype.
      algorithm: as `lj.Newton`'s.
    """

    shorthand: ClassVar[str] = "quasi_newton"


# --- the carry as one vector per sequence -------------------------------------------


# --- the masked step and its Jacobians ------------------------------------------------


def flat_step(cell: Cell, params: Params, carry0: Carry):
    """`F(h [B, N], px_t, valid_t, reset_t) -> (h' [B, N], y_t)` on raveled carries."""
    unravel = unraveler(carry0)

    def F(h, px, valid, reset):  # noqa: N802 (the F of the equations)
        new, y = masked_recur(cell.recur, params, unravel(h), px, valid, reset, carry0)
        return ravel(new), y

    return F


def step_and_jacobian(F, dense: bool):
    """`(h [B, N], px, valid, reset) -> (F(h), J)`, J `[B, N, N]` or its diagonal `[B, N]`."""

    def f(h, px, valid, reset):
        g = lambda v: F(v, px, valid, reset)[0]  # noqa: E731
        B, N = h.shape
        basis = jnp.broadcast_to(jnp.eye(N, dtype=h.dtype)[:, None, :], (N, B, N))
        Fh, cols = jax.vmap(lambda e: jax.jvp(g, (h,), (e,)), out_axes=(None, 0))(basis)
        # cols[k, b, i] = dF_i/dh_k for sequence b
        J = jnp.moveaxis(cols, 0, -1) if dense else jnp.diagonal(cols, axis1=0, axis2=2)
        return Fh, J

    return f


# --- the solve ----------------------------------------------------------------------


def residual(h: Array, Fh: Array) -> Array:
    """max_t |h_t - F_t(h_{t-1})|: inf where one side is NaN, 0 where both are.

    XLA's max skips NaN (an all-NaN iterate would give -inf and pass any
    tolerance), so a NaN gap is made inf first: a NaN guess never converges.
    Where the step itself gives NaN at a NaN state (a NaN input, which the
    sequential scan carries to the end of its sequence) the state is solved:
    NaN is the scan's answer there, so one bad sequence does not stop the
    others from converging.
    """
    gap = jnp.abs(h - Fh)
    solved = (h == Fh) | (jnp.isnan(h) & jnp.isnan(Fh))  # equal infinities, or NaN on both
    return jnp.max(jnp.where(solved, 0.0, jnp.where(jnp.isnan(gap), jnp.inf, gap)))


def _evaluate(F, dense, h, h0, px, valid, reset):
    Fh, J = jax.vmap(step_and_jacobian(F, dense))(entering(h, h0), px, valid, reset)
    return Fh, J, residual(h, Fh)


def iterate(F, options: Solver, h_init, h0, px, valid, reset):
    """The Newton-type iterations from `h_init` `[T, B, N]`: `(h, ParallelInfo)`."""
    dense, tol = options.dense, options.tol
    assert tol is not None  # `options` is settled (Solver.settled)

    def cond(state):
        _, _, _, res, k = state
        return (k < options.max_iters) & ~(res <= tol)

    def body(state):
        h, Fh, J, _, k = state
        h = options.update(J, Fh, h, h0)
        Fh, J, res = _evaluate(F, dense, h, h0, px, valid, reset)
        return h, Fh, J, res, k + 1

    Fh, J, res = _evaluate(F, dense, h_init, h0, px, valid, reset)
    state = (h_init, Fh, J, res, jnp.zeros((), jnp.int32))
    h, _, _, res, k = jax.lax.while_loop(cond, body, state)
    return h, ParallelInfo(k, res, res <= tol)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def fixed_point(cell_F, options, params, px, carry0, valid, reset, h_init):
    """The states `[T, B, N]` and ParallelInfo; differentiated implicitly (`_fixed_point_jvp`)."""
    F = cell_F(params, carry0)
    return iterate(F, options, h_init, ravel(carry0), px, valid, reset)


@fixed_point.defjvp
def _fixed_point_jvp(cell_F, options, primals, tangents):
    """The derivative of the solution, never of the iterations (module docstring).

    Differentiating h_t = F_t(h_{t-1}) at the solution gives the tangent
    recurrence dh_t = J_t dh_{t-1} + db_t, with db_t the change of F_t at the
    states held fixed (params, inputs, carry0: also h_{-1}), so dh is one
    linear recurrence: a dense affine scan for "newton", a sequential scan of
    exact jvps for the diagonal methods (their diagonal Jacobians are not
    the exact ones). Forward mode evaluates it; reverse mode is JAX's
    transpose of it, the adjoint recurrence backward in time.
    """
    params, px, carry0, valid, reset, h_init = primals
    h, info = fixed_point(cell_F, options, params, px, carry0, valid, reset, h_init)
    hp = entering(h, ravel(carry0))

    def steps(params, px, carry0):  # every F_t at the solution's states, h_{-1} = carry0
        F = cell_F(params, carry0)
        return jax.vmap(lambda a, p, v, r: F(a, p, v, r)[0])(
            entering(h, ravel(carry0)), px, valid, reset
        )

    _, db = jax.jvp(steps, (params, px, carry0), tuple(tangents[:3]))
    F = cell_F(params, carry0)
    zero = jnp.zeros_like(h[0])
    if options.dense:
        _, J = jax.vmap(step_and_jacobian(F, True))(hp, px, valid, reset)
        dh = affine_scan(J, db, zero, options.algorithm)
    else:

        def forward(dh_prev, inputs):
            hp_t, px_t, v_t, r_t, db_t = inputs
            _, moved = jax.jvp(lambda v: F(v, px_t, v_t, r_t)[0], (hp_t,), (dh_prev,))
            return moved + db_t, moved + db_t

        dh = jax.lax.scan(forward, zero, (hp, px, valid, reset, db))[1]
    return (h, info), (dh, jax.tree_util.tree_map(_no_tangent, info))


def _no_tangent(x: Array):
    """The zero tangent of a report entry (float0 for the integer and boolean ones)."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


def solve(
    cell: Cell, params: Params, seq: Sequences, options: Solver, init: Array | None = None
) -> tuple[Array, Carry, ParallelInfo]:
    """`(ys [T, B, O], carry, info)` in processing order, all from the final iterate.

    `init`: a guess of the raveled states `[T, B, N]` in processing order, or
    None (zeros). The outputs are the cell's `output` of the iterate's
    states (zero at masked steps) and the carry its last state, so a solve
    stopped early returns one consistent iterate.
    """
    px = cell.project(params, seq.xs)
    h0 = ravel(seq.carry0)
    T = seq.xs.shape[0]
    if T == 0:  # nothing to solve
        ys = jnp.zeros((0, h0.shape[0], cell.output_size), h0.dtype)
        return (
            ys,
            seq.carry0,
            ParallelInfo(jnp.zeros((), jnp.int32), jnp.zeros((), h0.dtype), jnp.array(True)),
        )
    h_init = jnp.zeros((T,) + h0.shape, h0.dtype) if init is None else init
    h_init = jax.lax.stop_gradient(h_init)
    h, info = fixed_point(
        _CellStep(cell), options, params, px, seq.carry0, seq.valid, seq.reset, h_init
    )
    info = jax.tree_util.tree_map(jax.lax.stop_gradient, info)
    unravel = unraveler(seq.carry0)
    ys = zero_invalid(jax.vmap(lambda s: cell.output(unravel(s)))(h), seq.valid)
    return ys, unravel(h[-1]), info


class _CellStep(NamedTuple):
    """`(params, carry0) -> F`, hashable (a static argument of the custom derivative)."""

    cell: Cell

    def __call__(self, params, carry0):
        return flat_step(self.cell, params, carry0)

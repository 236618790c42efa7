"""Dynamics of recurrent cells: Lyapunov spectra and fixed points.

A cell with its input fixed is a map of the carry, F(carry_{t-1}, x_t) =
carry_t. Two classical instruments describe such maps, and both are here
for any `Cell` (carries that are NamedTuples, the LSTM's (h, c), are
flattened to one vector, `[h; c]`, by the helper that
`lstmjax.diagnostics` uses):

* `lyapunov_spectrum`: the average exponential rates at which the product
  of carry Jacobians J_T ... J_1 stretches or shrinks volumes (Benettin's
  QR method). The largest exponent is the rate at which backpropagated
  gradients grow (> 0) or vanish (< 0).
* `fixed_points`: states with F(h, x) = h, found as Sussillo & Barak (2013)
  do, by minimising the speed q(h) = 1/2 ||F(h, x) - h||^2 from many starts,
  with the eigenvalues of the Jacobian at each point (stable, unstable or
  saddle).

Conventions are those of `lstmjax.diagnostics`: `xs` is `[B, T, F]`, and
every exponent is per step, in nats.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstmjax._array_checks import as_array, check_float, check_key
from lstmjax._arrays import ravel
from lstmjax._cell import Cell, check_carry, check_cell, check_params
from lstmjax._checks import check_nonnegative, check_positive, check_size
from lstmjax._map_cell import MapCell as MapCell
from lstmjax._map_cell import map_cell as map_cell
from lstmjax._typing import Array, Carry, Params, PRNGKey
from lstmjax.diagnostics import _checked, _flat_step, _time_major_inputs, jacobian_products


class LyapunovSpectrum(NamedTuple):
    """The result of `lyapunov_spectrum`.

    Attributes:
      exponents: `[B, k]`, the k largest Lyapunov exponents along each
        example's trajectory, in nats per step, in decreasing order.
      running: `[B, n, k]`, the running estimate after 1, 2, ..., n of the
        n measured steps (counted back from the end of the window), for
        convergence plots; `running[:, -1] == exponents`.
      mean: `[k]`, `exponents` averaged over the batch.
    """

    exponents: Array
    running: Array
    mean: Array


def carry_size(cell: Cell) -> int:
    """D, the size of the cell's flattened carry (LSTM: 2H)."""
    cell = check_cell(cell, "carry_size")
    shapes = jax.eval_shape(lambda: cell.initial_carry(()))
    return int(sum(leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(shapes)))


def _advance(cell: Cell, params: Params, xs: Array, carry: Optional[Carry], where: str) -> Carry:
    """The carry after running the cell over `xs` `[B, T, F]` (no outputs kept)."""
    pxs, carry = _time_major_inputs(cell, params, xs, carry, where)
    return jax.lax.scan(lambda c, px: (cell.recur(params, c, px)[0], None), carry, pxs)[0]


def lyapunov_spectrum(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Optional[Carry] = None,
    *,
    k: Optional[int] = None,
    warmup: int = 0,
    key: Optional[PRNGKey] = None,
) -> LyapunovSpectrum:
    """The k largest Lyapunov exponents of the input-driven map carry_{t-1} -> carry_t.

    With J_t = d carry_t / d carry_{t-1} along the trajectory driven by `xs`,
    the exponents are lambda_i = lim (1/n) log sigma_i(J_n ... J_1), sigma_i
    the singular values. A product and its transpose have the same singular
    values, so the QR (Benettin) recursion is run on the transposed product,
    backwards in time, with vector-Jacobian products (reverse mode works for
    every cell, custom VJPs included):

        Q_{t-1} R_t = J_t^T Q_t,   lambda_i ~ mean over t of log R_t[i, i],

    Q_t `[D, k]` orthonormal, R_t upper triangular with a positive diagonal.
    This is `diagnostics.jacobian_products(..., qr=True)`; with k = 1 it is
    backpropagation of one vector, so lambda_1 is the rate at which gradients
    of a loss on the last step grow or decay per step.

    Steps counted: the first `warmup` steps only drive the carry (so that it
    forgets its initial value); the last `warmup` steps only align Q, which
    runs backwards from the end, with the most expanding directions. The
    exponents average the T - 2 warmup steps in between. Q is
    re-orthonormalised at every step. Cost: k
    vector-Jacobian products and one `[D, k]` QR per step and example.

    Args:
      cell: any `Cell`.
      params: its parameters.
      xs: inputs `[B, T, F]` (for an autonomous map, zeros of any F).
      carry: initial carry with leading axis B; None means zeros.
      k: how many exponents (1 <= k <= D, the flat carry size); None means D.
      warmup: steps left out at each end (default 0), T > 2 warmup.
      key: PRNG key for the random orthonormal start Q; None means
        `jax.random.PRNGKey(0)`. The start is the same for every example.

    Returns:
      `LyapunovSpectrum` (exponents `[B, k]`, running estimates `[B, n, k]`
      with n = T - 2 warmup, batch mean `[k]`).
    """
    where = "lyapunov_spectrum"
    # The door: the checks of `unroll` (cell, xs, params, carry), then the options.
    xs, carry = _checked(cell, params, xs, carry, where)
    T = xs.shape[1]
    warmup = check_size(f"{where}: warmup", warmup, minimum=0)
    if T <= 2 * warmup:
        raise ValueError(f"{where}: xs has T = {T} steps; need T > 2 * warmup = {2 * warmup}.")
    D = carry_size(cell)
    k = D if k is None else check_size(f"{where}: k", k)
    if k > D:
        raise ValueError(
            f"{where}: k = {k} exponents asked for, but the flat carry has only D = {D}."
        )
    key = jax.random.PRNGKey(0) if key is None else check_key(key, where)
    if warmup:
        carry = _advance(cell, params, xs[:, :warmup], carry, where)
    dtype = jnp.result_type(xs, *jax.tree_util.tree_leaves(params))
    start = jnp.linalg.qr(jax.random.normal(key, (D, k), dtype))[0]
    prods = jacobian_products(cell, params, xs[:, warmup:], start, carry, qr=True)
    n = T - 2 * warmup
    logs = prods.log_stretch[:, :n][:, ::-1]  # measured steps, counted back from the end
    counts = jnp.arange(1, n + 1, dtype=logs.dtype)[None, :, None]
    running = jnp.cumsum(logs, axis=1) / counts
    exponents = running[:, -1]
    return LyapunovSpectrum(exponents=exponents, running=running, mean=jnp.mean(exponents, 0))


class FixedPoints(NamedTuple):
    """The result of `fixed_points`: M distinct points, slowest first.

    Attributes:
      points: `[M, D]`, flat carries (LSTM: `[h; c]`).
      carries: the same points as the cell's carry, each leaf `[M, D_i]`.
      speed: `[M]`, q = 1/2 ||F(h, x) - h||^2 at each point.
      eigenvalues: `[M, D]` complex, of the Jacobian dF/dh at each point,
        by decreasing modulus.
      kind: M strings: "stable" (every |eigenvalue| < 1), "unstable" (every
        one > 1) or "saddle" (some of each; a marginal one counts neither way).
      candidate_speed: `[S]`, q reached from every start, kept or not.
    """

    points: np.ndarray
    carries: Carry
    speed: np.ndarray
    eigenvalues: np.ndarray
    kind: tuple[str, ...]
    candidate_speed: np.ndarray


def _flat_starts(cell: Cell, starts, where: str) -> Array:
    """Starts as a carry with leaves `[S, D_i]` (or a flat `[S, D]` array) -> `[S, D]`, checked."""
    D = carry_size(cell)
    if isinstance(starts, (list, jax.Array, np.ndarray, np.generic)):  # one flat array
        starts = as_array(starts, "starts")
        check_float(starts, "starts")
        if jnp.ndim(starts) != 2 or jnp.shape(starts)[-1] != D:
            raise ValueError(
                f"{where}: starts must be flat carries [S, D] with D = {D} (the size of the "
                f"flat carry) or a carry with leaves [S, D_i]; got an array of shape "
                f"{jnp.shape(starts)}."
            )
        return starts
    leaves = jax.tree_util.tree_leaves(starts)
    S = jnp.shape(leaves[0])[0] if leaves and jnp.ndim(leaves[0]) else 0
    expected = jax.eval_shape(lambda: cell.initial_carry((S,)))
    return ravel(check_carry(starts, expected, where, "starts"))


def _fixed_point_door(cell, params, x, starts, steps, optimizer, where: str):
    """`(cell, x [F], flat starts [S, D], steps)` checked, for `speed_minima` and `fixed_points`."""
    cell = check_cell(cell, where)
    x = as_array(x, "x")
    check_float(x, "x")
    if jnp.ndim(x) != 1:
        vmap = ", or jax.vmap speed_minima over the inputs" if where == "speed_minima" else ""
        raise ValueError(
            f"{where}: x must be one constant input [features]; got shape {jnp.shape(x)}. "
            f"Each input has fixed points of its own: call {where} once per input "
            f"(for x in xs: ...){vmap}."
        )
    check_params(cell, params, jnp.shape(x)[0], where)
    flat = _flat_starts(cell, starts, where)
    steps = check_size(f"{where}: steps", steps)
    if optimizer is not None and not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"{where}: optimizer must be an optax transformation (e.g. optax.lbfgs()) or None; "
            f"got {type(optimizer).__name__}."
        )
    return cell, x, flat, steps


def speed_minima(
    cell: Cell,
    params: Params,
    x: Array,
    starts: Carry,
    *,
    steps: int = 200,
    optimizer: Optional[optax.GradientTransformation] = None,
) -> tuple[Array, Array]:
    """Minimise q(h) = 1/2 ||F(h, x) - h||^2 from every start (jit-able).

    Args:
      cell: any `Cell`; F(h, x) is its step with the input held at `x`.
      params: its parameters.
      x: the constant input `[F]`, one for every start. Each input has fixed
        points of its own, so a batch of inputs `[K, F]` is refused: call
        once per input, or `jax.vmap` this function over the inputs.
      starts: carry with leaves `[S, D_i]`, or a flat `[S, D]` array.
      steps: optimiser steps (default 200).
      optimizer: an optax transformation; None means `optax.lbfgs()`.

    Returns:
      `(points [S, D], speed [S])` after the last step.
    """
    inputs = _fixed_point_door(cell, params, x, starts, steps, optimizer, "speed_minima")
    return _speed_minima(*inputs, params, optimizer)


# Jitted and keyed on the cell, the step count and the optimizer, so that calling
# `fixed_points` again (another input, other starts of the same count) compiles nothing:
# eagerly, the scan of the descent was traced and compiled on every call (1.7 s for a
# 3-unit LSTM).
@functools.partial(jax.jit, static_argnames=("cell", "steps", "optimizer"))
def _speed_minima(cell, x, flat, steps, params, optimizer):
    step = _flat_step(cell, params, cell.initial_carry(()))
    px = cell.project(params, jnp.asarray(x, flat.dtype))
    # L-BFGS (with its zoom line search) reaches q ~ 1e-30 in tens of steps
    # where Adam stalls near 1e-5; any optax transformation may be passed.
    optimizer = optax.with_extra_args_support(optax.lbfgs() if optimizer is None else optimizer)

    def speed(h):  # one start: h [D]
        return 0.5 * jnp.sum(jnp.square(step(h, px) - h))

    def descend(h):
        def body(state, _):
            h, opt = state
            value, grad = jax.value_and_grad(speed)(h)
            updates, opt = optimizer.update(grad, opt, h, value=value, grad=grad, value_fn=speed)
            return (optax.apply_updates(h, updates), opt), None

        (h, _), _ = jax.lax.scan(body, (h, optimizer.init(h)), None, length=steps)
        assert isinstance(h, jax.Array)  # optax's updates of an array are an array
        return h, speed(h)

    return jax.vmap(descend)(flat)


def _merge(points: np.ndarray, speed: np.ndarray, tol: float) -> np.ndarray:
    """Indices of distinct points, slowest first (greedy: one within `tol` of a kept one goes)."""
    kept: list[int] = []
    for i in np.argsort(speed):
        if all(np.linalg.norm(points[i] - points[j]) > tol for j in kept):
            kept.append(int(i))
    return np.asarray(kept, dtype=int)


def _kind(moduli: np.ndarray) -> str:
    if np.all(moduli < 1):
        return "stable"
    if np.all(moduli > 1):
        return "unstable"
    return "saddle"


def fixed_points(
    cell: Cell,
    params: Params,
    x: Array,
    *,
    starts: Carry,
    tol: float = 1e-10,
    merge_tol: float = 1e-3,
    steps: int = 200,
    optimizer: Optional[optax.GradientTransformation] = None,
) -> FixedPoints:
    """Fixed points of carry -> F(carry, x) with their linear stability (Sussillo & Barak 2013).

    q(h) = 1/2 ||F(h, x) - h||^2 is minimised from every start with optax
    (`speed_minima`, jit-able); minima with q < `tol` are kept, points closer
    than `merge_tol` (Euclidean, flat carry) are merged into the slowest of
    them, and the Jacobian dF/dh at each (reverse mode) is diagonalised
    (`np.linalg.eigvals`). The filtering leaves a data-dependent number of
    points, so this function runs eagerly; `speed_minima` is the part to jit.

    Args:
      cell: any `Cell`.
      params: its parameters (cast them to float64 for tight tolerances).
      x: the constant input `[F]` (e.g. zeros: the cell between inputs).
        One input per call: each input has fixed points of its own, so a
        batch `[K, F]` is refused (loop over the inputs).
      starts: carry with leaves `[S, D_i]` (e.g. states visited on real
        inputs, plus noise), or a flat `[S, D]` array.
      tol: largest q of a kept point (default 1e-10), > 0.
      merge_tol: distance under which two points are one (default 1e-3), >= 0.
      steps: optimiser steps, as for `speed_minima` (default 200).
      optimizer: as for `speed_minima` (None: `optax.lbfgs()`).

    Returns:
      `FixedPoints` (points `[M, D]`, carries, speed, eigenvalues, kind).
    """
    where = "fixed_points"
    cell, x, flat, steps = _fixed_point_door(cell, params, x, starts, steps, optimizer, where)
    tol = check_positive(f"{where}: tol", tol)
    merge_tol = check_nonnegative(f"{where}: merge_tol", merge_tol)
    points, speed = _speed_minima(cell, x, flat, steps, params, optimizer)
    points, speed = np.asarray(points), np.asarray(speed)
    good = np.flatnonzero(np.isfinite(speed) & (speed < tol))
    keep = good[_merge(points[good], speed[good], merge_tol)]
    template = cell.initial_carry(())
    step = _flat_step(cell, params, template)
    px = cell.project(params, jnp.asarray(x, points.dtype))
    eig = np.zeros((0, points.shape[1]), complex)
    if len(keep):
        jacs = jax.vmap(jax.jacrev(step), in_axes=(0, None))(jnp.asarray(points[keep]), px)
        eig = np.linalg.eigvals(np.asarray(jacs))
    order = np.argsort(-np.abs(eig), axis=-1)
    eig = np.take_along_axis(eig, order, axis=-1)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    cuts = np.cumsum([leaf.shape[-1] for leaf in leaves])[:-1]
    carries = jax.tree_util.tree_unflatten(treedef, np.split(points[keep], cuts, axis=-1))
    return FixedPoints(
        points=points[keep],
        carries=carries,
        speed=speed[keep],
        eigenvalues=eig,
        kind=tuple(_kind(np.abs(e)) for e in eig),
        candidate_speed=speed,
    )


__all__ = [
    "FixedPoints",
    "LyapunovSpectrum",
    "MapCell",
    "carry_size",
    "fixed_points",
    "lyapunov_spectrum",
    "map_cell",
    "speed_minima",
]

"""The affine scan: every state of `h_t = a_t h_{t-1} + b_t` at once.

One primitive for every parallel-in-time computation in lstmjax: the exact
pass of the cells that are affine in their carry (`lj.min_gru`,
`lj.min_lstm`), each Newton step of the parallel solvers (`_newton.py`),
and their adjoint (backward) pass, which is the same recurrence run
backward in time with transposed coefficients.

`a_t` is diagonal (`a: [T, ..., H]`, elementwise) or dense
(`a: [T, ..., H, H]`, `h_t = a_t @ h_{t-1} + b_t`). Algorithms:

- "sequential": `lax.scan`, depth T, work O(T) (the reference);
- "associative": `lax.associative_scan` on pairs (a, b) with
  `(a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2)`; depth O(log T), work
  O(T log T) and O(T) memory per level (dense: O(T H^3) work). For
  accelerators, where depth decides;
- "blocked": T split into about sqrt(T) blocks of about sqrt(T) steps:
  (1) one short sequential pass over the steps of a block, vectorised
  across all blocks, gives each block's total map (A, s); (2) a sequential
  pass across the blocks gives the state entering each; (3) a second pass
  within the blocks, from those states, gives every state. Depth about
  3 sqrt(T), work about 2x the sequential one;
- "log" (diagonal only, for a > 0 and b, h0 >= 0): Feng et al.'s log-space
  form, `log h_t = a*_t + logcumsumexp(log b'_t - a*_t)` with
  `a*_t = cumsum(log a_t)` (h0 folded into b'_0); depth O(log T) through
  `cumsum`/`cumlogsumexp`. Fails (NaN) where some a_t = 0 (a reset).

The same three algorithms (not "log") also give every state of the
max-plus recurrence `m_t = max(m_{t-1} + alpha_t, beta_t)` (`max_plus_scan`):
the affine scan in the semiring where max is the sum and + the product,
which is how a log-space stabiliser (the mLSTM's) evolves. Its derivative
is plain autodiff of the algorithm (the values are [T, B, heads] scalars).

The strategies' option objects (`lj.Affine`, `lj.Newton`, ...) accept
"auto", resolved once from the arrays' platform (`_methods.resolve`):
"sequential" on CPU, "associative" elsewhere; this primitive takes only a
concrete algorithm.

Why "sequential" on CPU: measured on the 2-core CPU (B = 16, H = 64,
float32, forward pass), it took 24 ms at T = 10,000 against 59 ms blocked
and 75 ms associative, and 39 ms against 285 ms and 414 ms with dense
`[64, 64]` coefficients at T = 1,000. XLA:CPU runs a loop iteration of this
body in about 2 us, while the other forms pay for extra passes over memory
(blocked: transposes into block layout; associative: a copy per level).
Depth, not work, decides on accelerators, hence "associative" there.

A zero coefficient forgets what it multiplies (`apply`): where a_t = 0
(elementwise; a dense a_t when the whole matrix is zero), h_t = b_t even if
h_{t-1} is NaN or inf. That is a reset in every user of the scan, and the
sequential step's select forgets a NaN state there too, so a NaN input
stays within its segment as it does in `lax.scan` (IEEE's 0 x NaN = NaN
would carry it on). The log-space form is exempt (it has no resets). In
the max-plus scan the forgetting coefficient is alpha_t = -inf, and it
forgets a NaN m_{t-1} likewise (-inf + NaN is NaN in IEEE arithmetic).

Derivatives: `affine_scan` carries a `jax.custom_jvp` whose tangent is
the same recurrence in the tangents, dh_t = a_t dh_{t-1} + (da_t h_{t-1} +
db_t), solved by the same algorithm ("log" excepted: its tangent inputs
may be negative, so it uses the associative form). Forward mode evaluates that;
reverse mode is JAX's transpose of it: one affine scan backward in time
with the same coefficients, lam_t = g_t + a_{t+1}^T lam_{t+1}, then
db_t = lam_t and da_t = lam_t h_{t-1}^T. So differentiating any algorithm
costs one more scan of the same kind, and never differentiates its
internals (the blocked totals, the associative levels, the logarithms).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._typing import Array

ALGORITHMS = ("sequential", "associative", "blocked", "log")


class _Algebra(NamedTuple):
    """What a scan of `h_t = a_t . h_{t-1} (+) b_t` needs to know of its arithmetic."""

    apply: Callable  # a . h
    compose: Callable  # the coefficient of a2 . (a1 . h)
    add: Callable  # (+)
    one: Callable  # the coefficient that changes nothing, shaped like a
    zero: Callable  # the neutral element of (+), shaped like b


def _eye_like(a: Array) -> Array:
    return jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)


def _all_zero(a: Array) -> Array:
    return jnp.all(a == 0, axis=(-2, -1))


def _diagonal_apply(a: Array, h: Array) -> Array:
    return jnp.where(a == 0, jnp.zeros_like(h), a * h)


def _dense_apply(a: Array, h: Array) -> Array:
    product = jnp.einsum("...ij,...j->...i", a, h)
    return jnp.where(_all_zero(a)[..., None], jnp.zeros_like(product), product)


def _dense_compose(a2: Array, a1: Array) -> Array:
    product = a2 @ a1
    return jnp.where(_all_zero(a2)[..., None, None], jnp.zeros_like(product), product)


DIAGONAL = _Algebra(_diagonal_apply, _diagonal_apply, jnp.add, jnp.ones_like, jnp.zeros_like)
DENSE = _Algebra(_dense_apply, _dense_compose, jnp.add, _eye_like, jnp.zeros_like)


def _max_plus_apply(alpha: Array, m: Array) -> Array:
    return jnp.where(alpha == -jnp.inf, alpha, alpha + m)


MAX_PLUS = _Algebra(
    _max_plus_apply,
    _max_plus_apply,
    jnp.maximum,
    jnp.zeros_like,
    lambda b: jnp.full_like(b, -jnp.inf),
)


def _is_dense(a: Array, b: Array) -> bool:
    return a.ndim == b.ndim + 1


def _algebra(a: Array, b: Array) -> _Algebra:
    return DENSE if _is_dense(a, b) else DIAGONAL


def apply(a: Array, h: Array, dense: bool) -> Array:
    """`a h`: elementwise, or a matrix-vector product over the last axes; a zero
    coefficient (a whole zero matrix, if dense) forgets `h`, even NaN or inf."""
    return (DENSE if dense else DIAGONAL).apply(a, h)


def entering(hs: Array, h0: Array) -> Array:
    """`[h0, h_0, ..., h_{T-2}]`: the state entering each step (`hs: [T, ...]`)."""
    return jnp.concatenate([h0[None], hs[:-1]], axis=0)[: hs.shape[0]]


def default_algorithm(platform: str) -> str:
    """What "auto" means on `platform`: "sequential" on CPU, "associative" elsewhere."""
    return "sequential" if platform == "cpu" else "associative"


def affine_scan(a: Array, b: Array, h0: Array, algorithm: str) -> Array:
    """All states of `h_t = a_t h_{t-1} + b_t`, t = 0..T-1, from `h_{-1} = h0`.

    Args:
      a: `[T, ..., H]` (diagonal) or `[T, ..., H, H]` (dense).
      b: `[T, ..., H]`.
      h0: `[..., H]`.
      algorithm: one of ALGORITHMS (see the module docstring).

    Returns:
      `hs: [T, ..., H]`, `hs[t] = h_t`.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"affine scan algorithm must be one of {ALGORITHMS}; got {algorithm!r}.")
    if algorithm == "log" and _is_dense(a, b):
        raise ValueError("the log-space affine scan needs a diagonal a_t.")
    if b.shape[0] == 0:
        return b
    return _differentiable_scan(a, b, h0, algorithm)


def max_plus_scan(alpha: Array, beta: Array, m0: Array, algorithm: str) -> Array:
    """All states of `m_t = max(m_{t-1} + alpha_t, beta_t)`, t = 0..T-1, from `m_{-1} = m0`.

    Args:
      alpha, beta: `[T, ...]` (alpha may hold -inf: the step forgets m_{t-1};
        beta may hold -inf: the step only adds alpha_t).
      m0: `[...]`.
      algorithm: "sequential", "associative" or "blocked" (as `affine_scan`).

    Returns:
      `ms: [T, ...]`, `ms[t] = m_t`.
    """
    if algorithm not in ALGORITHMS or algorithm == "log":
        raise ValueError(
            "max-plus scan algorithm must be 'sequential', 'associative' or 'blocked'; "
            f"got {algorithm!r}."
        )
    if beta.shape[0] == 0:
        return beta
    return _run(alpha, beta, m0, algorithm, MAX_PLUS)


def _run(a: Array, b: Array, h0: Array, algorithm: str, algebra: _Algebra) -> Array:
    if algorithm == "sequential":
        return _sequential(a, b, h0, algebra)
    if algorithm == "associative":
        return _associative(a, b, h0, algebra)
    return _blocked(a, b, h0, algebra)


def _evaluate(a: Array, b: Array, h0: Array, algorithm: str) -> Array:
    if algorithm == "log":
        return _log_space(a, b, h0)
    return _run(a, b, h0, algorithm, _algebra(a, b))


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _differentiable_scan(a: Array, b: Array, h0: Array, algorithm: str) -> Array:
    return _evaluate(a, b, h0, algorithm)


@_differentiable_scan.defjvp
def _scan_jvp(algorithm, primals, tangents):
    """The tangent recurrence dh_t = a_t dh_{t-1} + da_t h_{t-1} + db_t (module docstring)."""
    a, b, h0 = primals
    da, db, dh0 = tangents
    hs = _evaluate(a, b, h0, algorithm)
    h_prev = entering(hs, h0)
    # The log-space form needs positive inputs, which tangents are not; its
    # tangent takes the other depth-O(log T) form.
    tangent_algorithm = "associative" if algorithm == "log" else algorithm
    # da_t h_{t-1}, forgotten where a_t is zero (a reset, whose da_t is zero too): the
    # mask comes from the primal a, so the tangent stays linear (and transposable).
    if _is_dense(a, b):
        moved, forget = jnp.einsum("...ij,...j->...i", da, h_prev), _all_zero(a)[..., None]
    else:
        moved, forget = da * h_prev, a == 0
    u = jnp.where(forget, jnp.zeros_like(moved), moved) + db
    return hs, _evaluate(a, u, dh0, tangent_algorithm)


def _sequential(a, b, h0, alg: _Algebra):
    def body(h, ab):
        h = alg.add(alg.apply(ab[0], h), ab[1])
        return h, h

    return jax.lax.scan(body, h0, (a, b))[1]


def _associative(a, b, h0, alg: _Algebra):
    b = b.at[0].set(alg.add(alg.apply(a[0], h0), b[0]))  # fold h0 into the first step

    def combine(e1, e2):  # e1 earlier, e2 later
        (a1, b1), (a2, b2) = e1, e2
        return alg.compose(a2, a1), alg.add(alg.apply(a2, b1), b2)

    return jax.lax.associative_scan(combine, (a, b))[1]


def _blocked(a, b, h0, alg: _Algebra):
    T = b.shape[0]
    L = max(1, math.isqrt(T))  # steps per block
    nb = -(-T // L)  # blocks
    pad = nb * L - T
    if pad:  # identity steps at the end change no earlier state
        a = jnp.concatenate([a, alg.one(a[:pad])], axis=0)
        b = jnp.concatenate([b, alg.zero(b[:pad])], axis=0)
    # [L, nb, ...]: step j of every block side by side.
    a_blk = jnp.swapaxes(jnp.reshape(a, (nb, L) + a.shape[1:]), 0, 1)
    b_blk = jnp.swapaxes(jnp.reshape(b, (nb, L) + b.shape[1:]), 0, 1)

    def totals(carry, ab):  # (1) each block's map h -> A h + s
        A, s = carry
        at, bt = ab
        return (alg.compose(at, A), alg.add(alg.apply(at, s), bt)), None

    A0 = alg.one(a_blk[0])
    (A, s), _ = jax.lax.scan(totals, (A0, alg.zero(b_blk[0])), (a_blk, b_blk))

    def across(h, As):  # (2) the state entering each block
        h_next = alg.add(alg.apply(As[0], h), As[1])
        return h_next, h

    _, h_in = jax.lax.scan(across, h0, (A, s))  # [nb, ..., H]

    def within(h, ab):  # (3) every state, all blocks at once
        h = alg.add(alg.apply(ab[0], h), ab[1])
        return h, h

    _, hs = jax.lax.scan(within, h_in, (a_blk, b_blk))  # [L, nb, ..., H]
    hs = jnp.reshape(jnp.swapaxes(hs, 0, 1), (nb * L,) + b.shape[1:])
    return hs[:T]


def _log_space(a, b, h0):
    b = b.at[0].add(a[0] * h0)
    log_a_star = jnp.cumsum(jnp.log(a), axis=0)
    return jnp.exp(log_a_star + jax.lax.cumlogsumexp(jnp.log(b) - log_a_star, axis=0))

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
  3 sqrt(T), work about 2x the sequential one but in wide vector kernels,
  no stored per-level copies: the fast form on XLA:CPU, where a loop
  iteration costs ~10 us whatever it does;
- "log" (diagonal only, for a > 0 and b, h0 >= 0): Feng et al.'s log-space
  form, `log h_t = a*_t + logcumsumexp(log b'_t - a*_t)` with
  `a*_t = cumsum(log a_t)` (h0 folded into b'_0); depth O(log T) through
  `cumsum`/`cumlogsumexp`. Fails (NaN) where some a_t = 0 (a reset).
- "auto": "blocked" on CPU, "associative" elsewhere (the default backend).

All of them are plain JAX code: reverse-mode and forward-mode autodiff go
through them, and they are exact (no iteration), so differentiating them is
differentiating the recurrence.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array
ALGORITHMS = ("auto", "sequential", "associative", "blocked", "log")


def _is_dense(a: Array, b: Array) -> bool:
    return a.ndim == b.ndim + 1


def _apply(a: Array, h: Array, dense: bool) -> Array:
    """`a h`: elementwise, or a matrix-vector product over the last axes."""
    return jnp.einsum("...ij,...j->...i", a, h) if dense else a * h


def _compose(a2: Array, a1: Array, dense: bool) -> Array:
    """The coefficient of `a2 (a1 h)`."""
    return a2 @ a1 if dense else a2 * a1


def resolve_algorithm(algorithm: str) -> str:
    """ "auto" -> "blocked" on CPU, "associative" on GPU/TPU (the default backend)."""
    if algorithm != "auto":
        return algorithm
    return "blocked" if jax.default_backend() == "cpu" else "associative"


def affine_scan(a: Array, b: Array, h0: Array, algorithm: str = "auto") -> Array:
    """All states of `h_t = a_t h_{t-1} + b_t`, t = 0..T-1, from `h_{-1} = h0`.

    Args:
      a: `[T, ..., H]` (diagonal) or `[T, ..., H, H]` (dense).
      b: `[T, ..., H]`.
      h0: `[..., H]`.
      algorithm: one of ALGORITHMS (see the module docstring).

    Returns:
      `hs: [T, ..., H]`, `hs[t] = h_t`.
    """
    algorithm = resolve_algorithm(algorithm)
    dense = _is_dense(a, b)
    if b.shape[0] == 0:
        return b
    if algorithm == "sequential":
        return _sequential(a, b, h0, dense)
    if algorithm == "associative":
        return _associative(a, b, h0, dense)
    if algorithm == "blocked":
        return _blocked(a, b, h0, dense)
    if algorithm == "log":
        if dense:
            raise ValueError("the log-space affine scan needs a diagonal a_t.")
        return _log_space(a, b, h0)
    raise ValueError(f"affine scan algorithm must be one of {ALGORITHMS}; got {algorithm!r}.")


def _sequential(a, b, h0, dense):
    def body(h, ab):
        h = _apply(ab[0], h, dense) + ab[1]
        return h, h

    return jax.lax.scan(body, h0, (a, b))[1]


def _associative(a, b, h0, dense):
    b = b.at[0].add(_apply(a[0], h0, dense))  # fold h0 into the first step

    def combine(e1, e2):  # e1 earlier, e2 later
        (a1, b1), (a2, b2) = e1, e2
        return _compose(a2, a1, dense), _apply(a2, b1, dense) + b2

    return jax.lax.associative_scan(combine, (a, b))[1]


def _identity_like(a, dense):
    if not dense:
        return jnp.ones_like(a)
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    return jnp.broadcast_to(eye, a.shape)


def _blocked(a, b, h0, dense):
    T = b.shape[0]
    L = max(1, math.isqrt(T))  # steps per block
    nb = -(-T // L)  # blocks
    pad = nb * L - T
    if pad:  # identity steps at the end change no earlier state
        a = jnp.concatenate([a, _identity_like(a[:pad], dense)], axis=0)
        b = jnp.concatenate([b, jnp.zeros_like(b[:pad])], axis=0)
    # [L, nb, ...]: step j of every block side by side.
    a_blk = jnp.swapaxes(jnp.reshape(a, (nb, L) + a.shape[1:]), 0, 1)
    b_blk = jnp.swapaxes(jnp.reshape(b, (nb, L) + b.shape[1:]), 0, 1)

    def totals(carry, ab):  # (1) each block's map h -> A h + s
        A, s = carry
        at, bt = ab
        return (_compose(at, A, dense), _apply(at, s, dense) + bt), None

    A0 = _identity_like(a_blk[0], dense)
    (A, s), _ = jax.lax.scan(totals, (A0, jnp.zeros_like(b_blk[0])), (a_blk, b_blk))

    def across(h, As):  # (2) the state entering each block
        h_next = _apply(As[0], h, dense) + As[1]
        return h_next, h

    _, h_in = jax.lax.scan(across, h0, (A, s))  # [nb, ..., H]

    def within(h, ab):  # (3) every state, all blocks at once
        h = _apply(ab[0], h, dense) + ab[1]
        return h, h

    _, hs = jax.lax.scan(within, h_in, (a_blk, b_blk))  # [L, nb, ..., H]
    hs = jnp.reshape(jnp.swapaxes(hs, 0, 1), (nb * L,) + b.shape[1:])
    return hs[:T]


def _log_space(a, b, h0):
    b = b.at[0].add(a[0] * h0)
    log_a_star = jnp.cumsum(jnp.log(a), axis=0)
    return jnp.exp(log_a_star + jax.lax.cumlogsumexp(jnp.log(b) - log_a_star, axis=0))

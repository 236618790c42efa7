"""ELK's damped step (Gonzalez et al. 2024): Levenberg-Marquardt on the quasi-Newton linearisation.

Where plain (quasi-)Newton overshoots (chaotic nets, gains > 1), ELK
solves, per state component (the Jacobians are diagonal),

    min_h  sum_t (h_t - a_t h_{t-1} - b_t)^2 + lambda sum_t (h_t - g_t)^2

with g the current guess: a linear-Gaussian state-space model (dynamics
h_t = a_t h_{t-1} + b_t with unit noise, observations g_t with variance
1/lambda, h_{-1} = carry0 known), whose minimiser is the Kalman
smoother's mean. lambda = 0 is the quasi-Newton step; large lambda a small
step towards it (a trust region).

The filter and the Rauch-Tung-Striebel smoother are three scans, each
parallel in time with the "associative" algorithm (depth O(log T)):

1. the variances, which do not depend on the data: with the predicted
   variance Q_t = a_t^2 P_{t-1} + 1 and the filtered one
   P_t = Q_t / (1 + lambda Q_t), each step is the Moebius map
   P -> (a^2 P + 1) / (lambda a^2 P + 1 + lambda), i.e. the 2x2 matrix
   [[a^2, 1], [lambda a^2, 1 + lambda]] acting projectively, so the prefix
   products of those matrices (normalised: scale does not change the map)
   give every P_t from P_{-1} = 0;
2. the filtered means, an affine recurrence once the gains
   k_t = lambda Q_t / (1 + lambda Q_t) are known:
   m_t = (1 - k_t) a_t m_{t-1} + ((1 - k_t) b_t + k_t g_t);
3. the smoothed means, an affine recurrence backward in time with
   c_t = P_t a_{t+1} / Q_{t+1}:
   s_t = c_t s_{t+1} + (m_t - c_t (a_{t+1} m_t + b_{t+1})),  s_{T-1} = m_{T-1}.

Steps 2 and 3 are the library's affine scan (`_affine_scan.py`); step 1
a sequential scan or `lax.associative_scan` of the 2x2 maps. Memory and
work O(T B N) per iteration (step 1's associative form: O(T log T)).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from lstmjax._affine_scan import affine_scan, apply, entering
from lstmjax._checks import check_nonnegative
from lstmjax._newton import Solver
from lstmjax._typing import Array


@dataclasses.dataclass(frozen=True)
class ELK(Solver):
    """ELK (Gonzalez et al. 2024): the quasi-Newton step damped by Levenberg-Marquardt.

    Attributes:
      max_iters: iteration cap; None (default): 4 T + 20 (a damped step no
        longer makes one state exact per iteration).
      tol: as `lj.Newton`'s; None (default): by dtype.
      algorithm: as `lj.Newton`'s (the filter's, smoother's and adjoint's scans).
      damping: lambda >= 0 (default 0.01; 0 is quasi-Newton; larger is more
        cautious and converges more slowly, linearly at a rate that grows
        with lambda).
    """

    damping: float = 0.01

    shorthand: ClassVar[str] = "elk"

    def __post_init__(self):
        super().__post_init__()
        self._set("damping", check_nonnegative("ELK: damping", self.damping))

    def default_max_iters(self, T: int) -> int:
        return 4 * T + 20

    def update(self, J: Array, Fh: Array, h: Array, h0: Array) -> Array:
        b = Fh - apply(J, entering(h, h0), False)
        return damped_step(J, b, h, h0, self.damping, self.algorithm)


def filtered_variances(a: Array, lam: Array, algorithm: str) -> tuple[Array, Array]:
    """`(P, Q)`: the filtered and predicted variances, each `[T, ...]`, from P_{-1} = 0."""
    if algorithm == "sequential":

        def step(P, a_t):
            Q = apply(a_t * a_t, P, False) + 1.0  # a reset (a_t = 0) forgets even a NaN P
            P = Q / (1.0 + lam * Q)
            return P, (P, Q)

        return jax.lax.scan(step, jnp.zeros_like(a[0]), a)[1]
    a2 = a * a
    one = jnp.ones_like(a)
    maps = (a2, one, lam * a2, one + lam)  # [[m00, m01], [m10, m11]] of each step

    def compose(earlier, later):  # later @ earlier, rescaled so that entries stay finite
        e00, e01, e10, e11 = earlier
        l00, l01, l10, l11 = later
        m = (
            l00 * e00 + l01 * e10,
            l00 * e01 + l01 * e11,
            l10 * e00 + l11 * e10,
            l10 * e01 + l11 * e11,
        )
        # A reset's map (a = 0: first column zero) is constant, P -> 1 / (1 + lam):
        # projectively the composition is the later map itself, even after a NaN one.
        constant = (l00 == 0) & (l10 == 0)
        m = tuple(jnp.where(constant, l, v) for l, v in zip(later, m, strict=True))
        scale = jnp.maximum(jnp.maximum(jnp.abs(m[0]), jnp.abs(m[1])),
                            jnp.maximum(jnp.abs(m[2]), jnp.abs(m[3])))  # fmt: skip
        return tuple(v / scale for v in m)

    _, m01, _, m11 = jax.lax.associative_scan(compose, maps)
    P = m01 / m11  # the prefix map applied to P_{-1} = 0
    P_prev = jnp.concatenate([jnp.zeros_like(P[:1]), P[:-1]], axis=0)
    return P, a2 * P_prev + 1.0


def damped_step(a: Array, b: Array, g: Array, h0: Array, damping: float, algorithm: str) -> Array:
    """The smoother mean for diagonal a, b, guesses g `[T, B, N]`, known h0 `[B, N]`.

    `algorithm`: the scans' algorithm (`_affine_scan.ALGORITHMS`, not "log").
    """
    lam = jnp.asarray(damping, g.dtype)
    P, Q = filtered_variances(a, lam, algorithm)
    k = lam * Q / (1.0 + lam * Q)
    m = affine_scan((1.0 - k) * a, (1.0 - k) * b + k * g, h0, algorithm)
    if g.shape[0] == 1:
        return m
    c = P[:-1] * a[1:] / Q[1:]
    u = m[:-1] - c * (a[1:] * m[:-1] + b[1:])
    # A NaN state (a NaN input, which the sequential scan carries forward) says
    # nothing about the states before it: the backward pass stops there, so the
    # NaN stays where the scan has it instead of spreading back in time.
    lost = jnp.isnan(m)
    cut = jnp.isnan(c) | jnp.isnan(u)
    c = jnp.where(cut, 0.0, c)
    u = jnp.where(cut, jnp.where(lost[:-1], 0.0, m[:-1]), u)
    s = affine_scan(c[::-1], u[::-1], jnp.where(lost[-1], 0.0, m[-1]), algorithm)[::-1]
    s = jnp.where(lost[:-1], jnp.nan, s)
    return jnp.concatenate([s, m[-1:]], axis=0)

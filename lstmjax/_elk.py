"""ELK's damped step (Gonzalez et al. 2024): Levenberg-Marquardt on the quasi-Newton linearisation.

Where plain (quasi-)Newton overshoots (chaotic nets, gains > 1), ELK
solves, per state component (the Jacobians are diagonal),

    min_h  sum_t (h_t - a_t h_{t-1} - b_t)^2 + lambda sum_t (h_t - g_t)^2

with g the current guess: a linear-Gaussian state-space model (dynamics
h_t = a_t h_{t-1} + b_t with unit noise, observations g_t with variance
1/lambda, h_{-1} = carry0 known), whose minimiser is the Kalman
smoother's mean. lambda = 0 is the quasi-Newton step; large lambda a small
step towards it (a trust region).

This implementation runs the filter and the Rauch-Tung-Striebel smoother
as two sequential scans over time, elementwise over B and N: O(T B N)
memory and work, but depth 2T per iteration. The parallel (associative)
form of the smoother, which gives the papers' O(log T) depth, is left for
later; on CPU the depth matters little, on accelerators it does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def damped_step(a: Array, b: Array, g: Array, h0: Array, damping: float) -> Array:
    """The smoother mean for diagonal a, b, guesses g `[T, B, N]`, known h0 `[B, N]`."""
    lam = jnp.asarray(damping, g.dtype)

    def filt(carry, inputs):  # carry: posterior mean and variance of h_{t-1}
        m, P = carry
        a_t, b_t, g_t = inputs
        m_pred = a_t * m + b_t
        P_pred = a_t * a_t * P + 1.0
        k = P_pred * lam / (1.0 + P_pred * lam)  # gain for an observation of variance 1/lam
        m_f = m_pred + k * (g_t - m_pred)
        P_f = (1.0 - k) * P_pred
        return (m_f, P_f), (m_f, P_f, P_pred)

    _, (m_f, P_f, P_pred) = jax.lax.scan(filt, (h0, jnp.zeros_like(h0)), (a, b, g))

    def smooth(m_next, inputs):  # backward: m_next is the smoothed mean of h_{t+1}
        m_t, P_t, a_next, b_next, P_pred_next = inputs
        c = P_t * a_next / P_pred_next
        m_s = m_t + c * (m_next - (a_next * m_t + b_next))
        return m_s, m_s

    T = g.shape[0]
    if T == 1:
        return m_f
    _, m_s = jax.lax.scan(
        smooth, m_f[-1], (m_f[:-1], P_f[:-1], a[1:], b[1:], P_pred[1:]), reverse=True
    )
    return jnp.concatenate([m_s, m_f[-1:]], axis=0)

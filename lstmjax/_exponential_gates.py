"""Exponential gating with its log-space stabiliser (xLSTM, Beck et al. 2024), written once.

Both xLSTM cells (`lj.slstm`, `lj.mlstm`) open their input gate exponentially,
i_t = exp(i~_t), and close their forget gate either as f_t = sigmoid(f~_t) or
as f_t = exp(f~_t). Their memories s (the sLSTM's c and n, the mLSTM's C and
n) follow s_t = f_t s_{t-1} + i_t u_t and grow like exp(i~), which overflows
float32 past i~ of about 88. The cells therefore carry the scaled memories
s'_t = s_t exp(-m_t) and the stabiliser m_t (Beck et al., eq. 15-17 and
their appendix), with

    m_t  = max(log f_t + m_{t-1}, i~_t)
    i'_t = exp(i~_t - m_t)                  (<= 1)
    f'_t = exp(log f_t + m_{t-1} - m_t)     (<= 1)
    s'_t = f'_t s'_{t-1} + i'_t u_t

so that s'_t = s_t exp(-m_t) exactly for every choice of m: each cell's
output is a ratio of two memories scaled alike (the sLSTM's c / n, the
mLSTM's C q / max(|n^T q|, 1)), which m leaves unchanged, while every factor
applied to the carry is at most 1.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from lstmjax._typing import Array

FORGET_GATES = ("sigmoid", "exp")  # f_t = sigmoid(f~_t) or exp(f~_t)


def log_forget(f_pre: Array, forget_gate: str) -> Array:
    """log f_t from the forget gate's pre-activation f~_t (`forget_gate` in FORGET_GATES)."""
    return jax.nn.log_sigmoid(f_pre) if forget_gate == "sigmoid" else f_pre


def stabilise(
    m_prev: Array, log_f: Array, i_pre: Array, empty: Optional[Array] = None
) -> tuple[Array, Array, Array]:
    """`(m_t, f'_t, i'_t)`: the stabiliser and the two scaled gates (module docstring).

    `empty` (bool, optional): where the memory entering the step is empty
    (the sLSTM's normaliser n_{t-1} = 0, as in the zero initial carry),
    m_t = i~_t and f'_t = 0, so that the first input is kept at scale 1
    instead of exp(i~_t - log f_t - m_{t-1}), which may underflow to 0 and
    leave a zero normaliser.
    """
    m = jnp.maximum(log_f + m_prev, i_pre)
    if empty is None:
        return m, jnp.exp(log_f + m_prev - m), jnp.exp(i_pre - m)
    m = jnp.where(empty, i_pre, m)
    # The inner where keeps the unused exponent finite (<= 0), so its gradient is too.
    kept = jnp.where(empty, jnp.zeros_like(m), log_f + m_prev - m)
    f_scale = jnp.where(empty, jnp.zeros_like(m), jnp.exp(kept))
    return m, f_scale, jnp.exp(i_pre - m)

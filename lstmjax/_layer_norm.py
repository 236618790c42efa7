"""Layer normalisation (Ba, Kiros & Hinton 2016), shared by the LSTM and GRU cells.

    LN(v; g, b) = g * (v - mean(v)) / sqrt(var(v) + eps) + b

with the mean and the (biased) variance taken over the last axis of `v`,
one pair per example and time step, so that it behaves the same in training
and evaluation and needs no running statistics.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from lstmjax._arrays import row
from lstmjax._typing import Array

EPS = 1e-5  # added to the variance (PyTorch's and Flax's default)


def layer_norm(v: Array, gain: Array, bias: Optional[Array] = None, eps: float = EPS) -> Array:
    """LN over the last axis. v: `[..., n]`; gain, bias: `[n]` (bias None: no bias)."""
    # Statistics in at least float32: a bfloat16 variance of 4H terms loses
    # most of its digits, and the normalised value is returned in v's dtype.
    work = jnp.promote_types(v.dtype, jnp.float32)
    u = v.astype(work)
    mean = jnp.mean(u, axis=-1, keepdims=True)
    centred = u - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    out = (centred * jax.lax.rsqrt(var + eps)).astype(v.dtype) * row(gain, v)
    return out if bias is None else out + row(bias, v)

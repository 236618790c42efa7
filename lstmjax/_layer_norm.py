"""Layer normalisation (Ba, Kiros & Hinton 2016), shared by the LSTM and GRU cells.

    LN(v; g, b) = g * (v - mean(v)) / sqrt(var(v) + eps) + b

with the mean and the (biased) variance taken over the last axis of `v`,
one pair per example and time step, so that it behaves the same in training
and evaluation and needs no running statistics.
"""

from __future__ import annotations

import warnings
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


# --- widths at which layer normalisation loses what it normalises ------------------
#
# LN removes a vector's mean and scale. Over one unit nothing is left (the
# output is the LN bias); over two units only the sign of their difference.
# A vector x W with x of one entry is a multiple of one row of W, so LN keeps
# only the sign of x. The cells call these checks where their sizes are known.


def warn_two_units(where: str, what: str, name: str) -> None:
    """LN over two units leaves +-1 each: only the sign of their difference."""
    warnings.warn(
        f"{where}: layer_norm=True normalises {what} over its {name}=2 units, which leaves "
        f"+-1 per unit: only the sign of their difference gets through. Use {name} >= 3, or "
        "layer_norm=False.",
        UserWarning,
        stacklevel=3,
    )


def warn_one_input(where: str, vector: str, name: str) -> None:
    """`vector` = v W with v of one entry `name`: LN keeps only v's sign."""
    warnings.warn(
        f"{where}: layer_norm=True normalises {vector}, and with {name}=1 that vector is a "
        f"multiple of one row of the weight matrix: layer normalisation keeps only the sign of "
        f"that one entry and divides its size away. Use layer_norm=False, or {name} >= 2.",
        UserWarning,
        stacklevel=3,
    )

"""Trace-time input checks with messages that say what was expected.

Shapes and dtypes are static under `jit`, so every check here runs when a
function is traced and costs nothing at run time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_float(x, name: str = "x") -> None:
    """Reject integer, boolean and complex arrays where real numbers are needed."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point array (float32, float64 or bfloat16); "
            f"got dtype {dtype}. Token ids go through lstmjax.embedding first; "
            "cast other data with x.astype(jnp.float32)."
        )


def check_features(x, input_size: int, cell_name: str, name: str = "x") -> None:
    """Check that the last axis of `x` is the cell's input size."""
    shape = jnp.shape(x)
    if len(shape) == 0:
        raise ValueError(
            f"{cell_name}: {name} must have a feature axis [..., {input_size}]; got a scalar."
        )
    if shape[-1] != input_size:
        raise ValueError(
            f"{cell_name}: {name} has {shape[-1]} features (shape {shape}) but the "
            f"parameters expect input_size={input_size}."
        )


def check_carry(carry, expected, cell_name: str):
    """Check that `carry` has the structure and shapes of `expected`.

    A plain tuple is accepted where a NamedTuple carry is expected (so that
    PyTorch-style `(h, c)` works for the LSTM); it is returned converted.
    """
    if (
        isinstance(expected, tuple)
        and hasattr(expected, "_fields")
        and type(carry) is tuple
        and len(carry) == len(expected)
    ):
        carry = type(expected)(*carry)
    got_def = jax.tree_util.tree_structure(carry)
    want_def = jax.tree_util.tree_structure(expected)
    if got_def != want_def:
        raise ValueError(f"{cell_name}: carry has structure {got_def}, expected {want_def}.")
    for got, want in zip(
        jax.tree_util.tree_leaves(carry), jax.tree_util.tree_leaves(expected), strict=True
    ):
        if jnp.shape(got) != jnp.shape(want):
            raise ValueError(
                f"{cell_name}: carry leaf has shape {jnp.shape(got)}, expected "
                f"{jnp.shape(want)} (batch shape of x followed by the state size)."
            )
    return carry


def is_concrete(x) -> bool:
    """True when `x` holds values now (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def check_lengths(lengths, batch: int, time: int):
    """Validate `lengths` for `unroll`; returns them as an int32 array.

    Shape and dtype are always checked. The range [0, time] is checked when
    the values are concrete; under `jit` they cannot be inspected, and values
    outside the range behave as if clipped to it.
    """
    lengths = jnp.asarray(lengths)
    if jnp.shape(lengths) != (batch,):
        raise ValueError(
            f"lengths must have shape [batch] = ({batch},); got shape {jnp.shape(lengths)}."
        )
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must be an integer array; got dtype {lengths.dtype}.")
    if is_concrete(lengths):
        values = np.asarray(lengths)
        bad = (values < 0) | (values > time)
        if bad.any():
            raise ValueError(
                f"lengths must lie in [0, T] = [0, {time}]; got {values[bad].tolist()} "
                f"at batch positions {np.flatnonzero(bad).tolist()}."
            )
    return jnp.clip(lengths.astype(jnp.int32), 0, time)


def row(v, like):
    """Reshape a vector `[n]` to `[1, ..., 1, n]` to broadcast against `like`.

    Written out because the tests run with `jax_numpy_rank_promotion="raise"`,
    so that no accidental broadcast between ranks goes unnoticed.
    """
    return jnp.reshape(v, (1,) * (jnp.ndim(like) - 1) + jnp.shape(v))

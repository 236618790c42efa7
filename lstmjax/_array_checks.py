"""The checks of arrays: types, dtypes, ranks, features, lengths, step flags, ids, keys.

Shapes and dtypes are static under `jit`, so these checks run when a
function is traced and cost nothing at run time. Values (lengths, token ids)
can only be checked when they are concrete; under `jit` the functions that
take them document what happens instead. The checks of options (numbers,
bools, choices) are in `_checks.py`.
"""

from __future__ import annotations

import numbers
from typing import cast

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from lstmjax._checks import PROGRAM, check_concrete, check_real, is_traced

MAX_LISTED = 5  # offenders named in a value error; the rest are counted


def as_array(x, name: str) -> jax.Array:
    """`x` as an array; a list or tuple of numbers is converted, anything else is refused.

    A numpy array or scalar is returned unchanged (typed as a `jax.Array`: every
    `jnp` function takes it as one).
    """
    if isinstance(x, (jax.Array, np.ndarray, np.generic, jax.core.Tracer)):
        return cast(jax.Array, x)
    if isinstance(x, (list, tuple, numbers.Number)):
        try:
            return jnp.asarray(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} must be an array; got a {type(x).__name__} that is not a regular "
                f"nested list of numbers ({err})."
            ) from None
    raise TypeError(f"{name} must be an array; got {type(x).__name__}.")


def check_float(x, name: str = "x") -> None:
    """Reject integer, boolean and complex arrays where real numbers are needed."""
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{name} must be real; got complex dtype {dtype}. lstmjax's cells are real-valued; "
            "pass the real and imaginary parts as separate features if you need both."
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point array (float32, float64 or bfloat16); "
            f"got dtype {dtype}. Token ids go through lstmjax.embedding first; "
            "cast other data with x.astype(jnp.float32)."
        )


def check_rank(x, rank: int, layout: str, where: str, name: str = "xs") -> None:
    shape = jnp.shape(x)
    if len(shape) == rank:
        return
    hint = ""
    if len(shape) == rank - 1:
        hint = f" For a single sequence, add a batch axis with {name}[None]."
    elif len(shape) > rank:
        hint = (
            " Merge the extra leading axes into the batch first "
            f"({name}.reshape(-1, *{name}.shape[-2:]))."
        )
    raise ValueError(f"{where}: {name} must have rank {rank}, {layout}; got shape {shape}.{hint}")


def check_features(x, input_size: int, where: str, name: str = "x") -> None:
    """Check that the last axis of `x` is the cell's input size."""
    shape = jnp.shape(x)
    if len(shape) == 0:
        raise ValueError(
            f"{where}: {name} must have a feature axis [..., {input_size}]; got a scalar."
        )
    if shape[-1] != input_size:
        raise ValueError(
            f"{where}: {name} has {shape[-1]} features (shape {shape}) but the "
            f"parameters expect input_size={input_size}."
        )


def _offenders(values: np.ndarray, bad: np.ndarray) -> str:
    """The first few bad values with their positions, and how many there are."""
    where = np.argwhere(bad)
    shown = ", ".join(
        f"{values[tuple(i)].item()} at {tuple(int(j) for j in i) if len(i) > 1 else int(i[0])}"
        for i in where[:MAX_LISTED]
    )
    more = f" and {len(where) - MAX_LISTED} more" if len(where) > MAX_LISTED else ""
    return f"{shown}{more} ({len(where)} of {values.size} out of range)"


def check_lengths(lengths, batch: int, time: int, where: str = "unroll", name: str = "lengths"):
    """The one check of sequence lengths; returns them as an int32 `[batch]` array.

    Shape and dtype are always checked; the range [0, time] is checked when
    the values are concrete. Under `jit` they cannot be inspected, and values
    outside the range act as if clipped to it (documented by every caller).
    """
    lengths = as_array(lengths, name)
    if jnp.shape(lengths) != (batch,):
        raise ValueError(
            f"{where}: {name} must have shape [batch] = ({batch},); got shape {jnp.shape(lengths)}."
        )
    if not jnp.issubdtype(jnp.result_type(lengths), jnp.integer):
        raise TypeError(
            f"{where}: {name} must be an integer array; got dtype {jnp.result_type(lengths)}."
        )
    if not is_traced(lengths):
        values = np.asarray(lengths)
        bad = (values < 0) | (values > time)
        if bad.any():
            raise ValueError(
                f"{where}: {name} must lie in [0, T] = [0, {time}]; got {_offenders(values, bad)}."
            )
    return jnp.clip(jnp.asarray(lengths).astype(jnp.int32), 0, time)


def check_step_flags(flags, batch: int, time: int, time_major: bool, where: str, name: str):
    """A boolean array with one flag per step (`mask`, `resets`), in the inputs' layout.

    `[batch, time]`, or `[time, batch]` with `time_major=True`; returned
    time-major, `[time, batch]`.
    """
    flags = as_array(flags, name)
    shape = (time, batch) if time_major else (batch, time)
    layout = "[time, batch]" if time_major else "[batch, time]"
    if jnp.shape(flags) != shape:
        hint = ""
        if jnp.shape(flags) == shape[::-1] and time != batch:
            hint = " (the transpose: it follows the layout of xs, set by time_major)"
        raise ValueError(
            f"{where}: {name} must have shape {layout} = {shape}; got shape "
            f"{jnp.shape(flags)}{hint}."
        )
    if jnp.result_type(flags) != jnp.bool_:
        raise TypeError(
            f"{where}: {name} must be a bool array; got dtype {jnp.result_type(flags)}."
        )
    return flags if time_major else jnp.swapaxes(flags, 0, 1)


def check_token_ids(ids, vocab_size: int, where: str, name: str = "ids"):
    """Integer ids in [0, vocab_size), checked when concrete."""
    ids = as_array(ids, name)
    dtype = jnp.result_type(ids)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{where}: {name} must be integer token ids; got dtype {dtype}.")
    if not is_traced(ids) and jnp.size(ids):
        values = np.asarray(ids)
        bad = (values < 0) | (values >= vocab_size)
        if bad.any():
            raise ValueError(
                f"{where}: {name} must lie in [0, vocab_size) = [0, {vocab_size}); "
                f"got {_offenders(values, bad)}."
            )
    return ids


def check_time_constant(name: str, value, size: int, *, what: str = PROGRAM) -> np.ndarray:
    """A positive finite scalar, or one per unit (`[size]`); returned as a float64 numpy array.

    Concrete, as every option (`_checks.check_concrete`: it fixes `what`).
    """
    check_concrete(name, value, what)
    if np.ndim(value) == 0:
        v = check_real(name, value, what=what)
        if v <= 0:
            raise ValueError(f"{name} must be > 0; got {value!r}.")
        return np.asarray(v, np.float64)
    array = np.asarray(value)
    if array.shape != (size,):
        raise ValueError(
            f"{name} must be a scalar or have shape [hidden_size] = ({size},); "
            f"got shape {array.shape}."
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must be real; got dtype {array.dtype}.")
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        raise ValueError(f"{name} must be finite and > 0; got {_offenders(array, bad)}.")
    return array.astype(np.float64)


def check_key(key, where: str, name: str = "key") -> jax.Array:
    """A JAX PRNG key: a typed key (`jax.random.key`) or raw uint32 `[2]` (`jax.random.PRNGKey`)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and jnp.ndim(key) == 0:
        return key
    if dtype == jnp.uint32 and jnp.shape(key) == (2,):
        return key
    shape = jnp.shape(key) if dtype is not None else None
    raise TypeError(
        f"{where}: {name} must be a jax.random key (jax.random.key(0) or "
        f"jax.random.PRNGKey(0)); got {type(key).__name__}"
        + (f" of dtype {dtype} and shape {shape}." if dtype is not None else ".")
    )


def check_parameter(
    name: str, value, where: str, low: float | None = None, high: float | None = None
):
    """A physical parameter: a real number or array, possibly traced (never a str or bool).

    Values are checked against `[low, high]` where they are concrete; a
    traced value passes (its range is the caller's to document).
    """
    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(
            f"{where}: {name} must be a real number or array; got {value!r} "
            f"({type(value).__name__})."
        )
    traced = is_traced(value)
    try:  # a concrete value is read on the host: under a trace, jnp would trace it too
        dtype = value.dtype if traced else np.asarray(value).dtype
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{where}: {name} must be a real number or array; got {type(value).__name__}."
        ) from error
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"{where}: {name} must be real; got dtype {dtype}.")
    if traced:
        return value
    values = np.asarray(value, dtype=np.float64)
    outside = ~np.isfinite(values)
    if low is not None:
        outside |= values < low
    if high is not None:
        outside |= values > high
    if outside.any():
        bounds = "" if low is None and high is None else f" and in [{low}, {high}]"
        raise ValueError(f"{where}: {name} must be finite{bounds}; got {value!r}.")
    return value

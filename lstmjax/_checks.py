"""Every input check of lstmjax, with messages that say what was expected.

This is the only module that raises for bad input: each public function
calls the checks it needs at its door, passing the argument's name as the
user wrote it, so the message names what the user passed. Shapes and dtypes
are static under `jit`, so these checks run when a function is traced and
cost nothing at run time. Values (lengths, token ids) can only be checked
when they are concrete; under `jit` the functions that take them document
what happens instead.

One rule for numeric options (sizes, counts, tolerances, rates, limits),
everywhere: a Python number or a NumPy scalar is accepted alike
(`np.int64(3)`, `np.float32(0.1)`), a real-valued option also as a concrete
0-d array; bools are refused, and so is a traced value (an option fixes the
program, so it cannot be an argument of the traced function). `check_size`
returns a Python int and `check_real` (with `check_positive`,
`check_nonnegative`) a Python float, which is what option objects store, so
that equal options hash equal and share a compiled program.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import cast

import jax
import jax.core
import jax.numpy as jnp
import numpy as np


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


MAX_LISTED = 5  # offenders named in a value error; the rest are counted


# --- sizes and options (checked when a factory is called) -------------------


def check_size(name: str, value, minimum: int = 1) -> int:
    """An int >= `minimum` (a size, a count): a Python int or a NumPy integer; bools are refused.

    Returned as a Python int.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})."
        )
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def check_heads(where: str, hidden_size, num_heads) -> tuple[int, int]:
    """`(hidden_size, num_heads)`: positive ints, the heads dividing the hidden size."""
    hidden_size = check_size("hidden_size", hidden_size)
    num_heads = check_size("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(
            f"{where}: num_heads must divide hidden_size (each head holds hidden_size / "
            f"num_heads units); got hidden_size={hidden_size}, num_heads={num_heads}."
        )
    return hidden_size, num_heads


def check_optional_size(name: str, value, minimum: int = 1):
    """None, or a Python int >= `minimum` (an optional size such as `proj_size`)."""
    return None if value is None else check_size(name, value, minimum)


def _real_number(name: str, value) -> float:
    """A real scalar (a Python number, a NumPy scalar or a concrete 0-d real array) as a float."""
    if _is_tracer(value):
        raise TypeError(
            f"{name} must be a concrete number (an option, fixed when the program is "
            f"traced); got a traced value {value!r}."
        )
    dtype = getattr(value, "dtype", None)
    is_real = isinstance(value, numbers.Real) or (
        dtype is not None
        and np.ndim(value) == 0
        and (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))
    )
    if isinstance(value, (bool, np.bool_)) or not is_real:
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__}).")
    return float(value)


def check_real(name: str, value) -> float:
    """A finite real scalar (a Python number, a NumPy scalar or a concrete 0-d real array).

    Returned as a Python float.
    """
    number = _real_number(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    return number


def check_positive(name: str, value) -> float:
    """A finite real number > 0 (a tolerance, a step), taken as `check_real` takes it."""
    number = _real_number(name, value)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
    return number


def check_nonnegative(name: str, value) -> float:
    """A finite real number >= 0 (a damping, a noise scale), taken as `check_real` takes it."""
    number = _real_number(name, value)
    if not (number >= 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be >= 0 and finite; got {value!r}.")
    return number


def check_rate(name: str, value) -> float:
    """A probability in [0, 1) (dropout, zoneout)."""
    rate = check_real(name, value)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must lie in [0, 1); got {value!r}.")
    return rate


def check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return bool(value)


ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "identity": lambda v: v,
    "linear": lambda v: v,
}


def check_activation(name: str, value) -> Callable:
    """A callable, or one of the names in `ACTIVATIONS` ("tanh", "relu", ...)."""
    if isinstance(value, str):
        if value not in ACTIVATIONS:
            raise ValueError(
                f"{name} must be a callable or one of {sorted(ACTIVATIONS)}; got {value!r}."
            )
        return ACTIVATIONS[value]
    if not callable(value):
        raise TypeError(f"{name} must be a callable (e.g. jnp.tanh); got {value!r}.")
    return value


def check_callable(name: str, value) -> Callable:
    """An initialiser or other function argument."""
    if not callable(value):
        raise TypeError(f"{name} must be callable; got {value!r} ({type(value).__name__}).")
    return value


def check_factory_options(dtype, **initializers):
    """The options every cell factory shares: initialisers (callables) and a real dtype."""
    for name, init in initializers.items():
        check_callable(name, init)
    return check_param_dtype(dtype)


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}.")
    return value


def check_param_dtype(dtype, name: str = "dtype"):
    """A real floating dtype for parameters; complex, integer and bool are refused."""
    try:
        dt = jnp.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{name} must be a floating-point dtype; got {dtype!r}.") from err
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(
            f"{name} must be a real floating-point dtype (float32, float64, bfloat16, float16); "
            f"got {dt}."
        )
    return dt


# --- arrays -------------------------------------------------------------------


def as_array(x, name: str) -> jax.Array:
    """`x` as an array; a list or tuple of numbers is converted, anything else is refused.

    A numpy array or scalar is returned unchanged (typed as a `jax.Array`: every
    `jnp` function takes it as one).
    """
    if isinstance(x, (jax.Array, np.ndarray, np.generic)) or _is_tracer(x):
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
    if not _is_tracer(lengths):
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
    if not _is_tracer(ids) and jnp.size(ids):
        values = np.asarray(ids)
        bad = (values < 0) | (values >= vocab_size)
        if bad.any():
            raise ValueError(
                f"{where}: {name} must lie in [0, vocab_size) = [0, {vocab_size}); "
                f"got {_offenders(values, bad)}."
            )
    return ids


def check_temperature(temperature) -> None:
    """A concrete sampling temperature must be finite and >= 0 (0 = greedy).

    A traced one cannot be inspected; `generate.sample_logits` then returns
    `INVALID_TOKEN` for a NaN or negative one.
    """
    if not _is_tracer(temperature):
        value = check_real("temperature", temperature)
        if value < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy); got {temperature!r}.")


def check_top_k(top_k, vocab_size: int) -> int:
    """`top_k` an int in [1, vocab_size]."""
    top_k = check_size("top_k", top_k)
    if top_k > vocab_size:
        raise ValueError(f"top_k must be an int in [1, V] = [1, {vocab_size}]; got {top_k!r}.")
    return top_k


def check_time_constant(name: str, value, size: int) -> np.ndarray:
    """A positive finite scalar, or one per unit (`[size]`); returned as a float64 numpy array."""
    if np.ndim(value) == 0:
        v = check_real(name, value)
        if v <= 0:
            raise ValueError(f"{name} must be > 0; got {value!r}.")
        return np.asarray(v, np.float64)
    if _is_tracer(value):
        raise TypeError(f"{name} must be a concrete number or array (it fixes the dynamics).")
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

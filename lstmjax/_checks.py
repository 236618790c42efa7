"""The checks of options: numbers, bools, choices, functions and dtypes.

Each public function calls the checks it needs at its door, passing the
argument's name as the user wrote it, so the message names what the user
passed and says what was expected. The checks of arrays (shapes, dtypes,
lengths, flags, token ids, keys) are in `_array_checks.py`.

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

import jax
import jax.core
import jax.numpy as jnp
import numpy as np


def is_traced(value) -> bool:
    """Whether `value` (an array or a pytree) holds a value traced by `jit`, `vmap` or `grad`."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


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


def check_index(name: str, value, count: int, what: str) -> int:
    """A Python int in `[0, count)`, e.g. a process index or a member of a population.

    `what` names what is counted ("processes", "members").
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int in [0, {count}) ({count} {what}); got {value!r} "
            f"({type(value).__name__})."
        )
    index = int(value)
    if not 0 <= index < count:
        raise ValueError(f"{name} must be an int in [0, {count}) ({count} {what}); got {value!r}.")
    return index


def _real_number(name: str, value) -> float:
    """A real scalar (a Python number, a NumPy scalar or a concrete 0-d real array) as a float."""
    if is_traced(value):
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


def check_static_bool(name: str, value, how: str) -> bool:
    """True or False as a Python value; a traced bool says how to make it static (`how`)."""
    if is_traced(value):
        raise TypeError(
            f"{name} must be a Python bool (it chooses the code path when tracing); got a "
            f"traced value. {how}"
        )
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return bool(value)


def check_concrete(name: str, value, what: str = "the cell") -> None:
    """Refuse a traced value where a number fixes a configuration (a cell's, a net's).

    A cell or a net is a static value that `jit` hashes, so its options must
    be known when it is built, not traced inside `jit`, `vmap` or `grad`.
    """
    if is_traced(value):
        raise TypeError(
            f"{name} must be a concrete number: it fixes {what}, which is built before "
            f"tracing; got a traced value (from inside jax.jit, vmap or grad). Build "
            f"{what} outside the transformed function, with {name} a Python number or a "
            "NumPy array."
        )


def check_concrete_real(name: str, value, what: str = "the cell") -> float:
    """`check_real` for an option that fixes a configuration: tracers get a clear refusal."""
    check_concrete(name, value, what)
    return check_real(name, value)


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


# --- sampling (`generate`) ---------------------------------------------------


def check_temperature(temperature) -> None:
    """A concrete sampling temperature must be finite and >= 0 (0 = greedy).

    A traced one cannot be inspected; `generate.sample_logits` then returns
    `INVALID_TOKEN` for a NaN or negative one.
    """
    if not is_traced(temperature):
        value = check_real("temperature", temperature)
        if value < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy); got {temperature!r}.")


def check_top_k(top_k, vocab_size: int) -> int:
    """`top_k` an int in [1, vocab_size]."""
    top_k = check_size("top_k", top_k)
    if top_k > vocab_size:
        raise ValueError(f"top_k must be an int in [1, V] = [1, {vocab_size}]; got {top_k!r}.")
    return top_k

"""The checks of options: numbers, bools, choices, functions and dtypes.

Each public function calls the checks it needs at its door, passing the
argument's name as the user wrote it, so the message names what the user
passed and says what was expected. The checks of arrays (shapes, dtypes,
lengths, flags, token ids, keys) are in `_array_checks.py`.

One rule for numeric and boolean options (sizes, counts, indices,
tolerances, rates, limits, flags), everywhere, written once in `scalar`: a
NumPy scalar (`np.int64(3)`, `np.float32(0.1)`, `np.True_`) or a concrete
0-d array is taken as the Python number it holds, and a traced value is
refused with a message that says so (an option fixes the program, so it
cannot be an argument of the traced function). Bools are not numbers here:
`True` is refused as a size or a rate. The checks return Python values
(`check_size` an int, `check_real` and its kin a float, `check_bool` a
bool), which is what option objects store, so that equal options compare
and hash equal and share a compiled program.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

P = ParamSpec("P")
R = TypeVar("R")
PROGRAM = "the program"  # what an option fixes, unless the caller names it (a cell, a net)


def is_traced(value) -> bool:
    """Whether `value` (an array or a pytree) holds a value traced by `jit`, `vmap` or `grad`."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def check_concrete(name: str, value, what: str = PROGRAM) -> None:
    """Refuse a traced value where a number fixes `what` (the program, a cell, a net).

    An option, a cell or a net is a static value that `jit` hashes, so its
    numbers must be known before tracing, not traced inside `jit`, `vmap`
    or `grad`.
    """
    if is_traced(value):
        raise TypeError(
            f"{name} must be a concrete number: it fixes {what}, which is set before "
            "tracing; got a traced value (from inside jax.jit, vmap or grad). Pass a Python "
            "number or a NumPy value from outside the transformed function (under jax.jit, "
            "a static argument)."
        )


def scalar(name: str, value, what: str = PROGRAM) -> Any:
    """The one rule: the Python bool, int or float a scalar option holds.

    A Python value is returned as it is; a NumPy scalar or a concrete 0-d
    array of bools or numbers as the Python value it holds (`.item()`); a
    traced value is refused (`check_concrete`). Anything else is returned
    unchanged, for the caller's check to refuse with its own message.
    """
    check_concrete(name, value, what)
    if isinstance(value, (np.generic, np.ndarray, jax.Array)) and np.ndim(value) == 0:
        if value.dtype == np.bool_ or jnp.issubdtype(value.dtype, jnp.number):
            return value.item()
    return value


def jit_with_options(
    *static: str, check: Callable[[dict], None] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`jax.jit` with the arguments named `static` static, each taken by the one rule first.

    `scalar` runs on them before `jax.jit` hashes them: a NumPy scalar or a
    concrete 0-d array is passed on as the Python value it holds (one compiled
    program for `3` and `np.int64(3)`; a 0-d array is not refused as
    unhashable), and a traced one is refused by name. The function's own
    checks then run when it is traced, as under `jax.jit`.

    `check`, if given, sees every argument by name (defaults filled in)
    before `jax.jit` does, so that values which are traced inside (a rate, a
    step size) are still checked while they are concrete.
    """

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        jitted = jax.jit(fn, static_argnames=static)
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:  # a missing or unknown argument: Python's own message
                return jitted(*args, **kwargs)
            for name in static:
                if name in bound.arguments:
                    value = bound.arguments[name] = scalar(name, bound.arguments[name])
                    try:
                        hash(value)
                    except TypeError:
                        raise TypeError(
                            f"{fn.__name__}: {name} fixes the compiled program, so it must be "
                            f"a hashable value such as a Python number; got {value!r} "
                            f"({type(value).__name__})."
                        ) from None
            if check is not None:
                defaults = {n: p.default for n, p in signature.parameters.items()}
                check({**defaults, **bound.arguments})
            return jitted(*bound.args, **bound.kwargs)

        return call

    return wrap


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# --- sizes and options (checked when a factory is called) -------------------


def check_size(name: str, value, minimum: int = 1, *, what: str = PROGRAM) -> int:
    """An int >= `minimum` (a size, a count), taken by the one rule (`scalar`); not a bool.

    Returned as a Python int.
    """
    number = scalar(name, value, what)
    if not _is_int(number):
        raise TypeError(
            f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})."
        )
    if number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(number)


def check_heads(where: str, hidden_size, num_heads) -> tuple[int, int]:
    """`(hidden_size, num_heads)`: positive ints, the heads dividing the hidden size."""
    hidden_size = check_size("hidden_size", hidden_size, what="the cell")
    num_heads = check_size("num_heads", num_heads, what="the cell")
    if hidden_size % num_heads:
        raise ValueError(
            f"{where}: num_heads must divide hidden_size (each head holds hidden_size / "
            f"num_heads units); got hidden_size={hidden_size}, num_heads={num_heads}."
        )
    return hidden_size, num_heads


def check_optional_size(name: str, value, minimum: int = 1, *, what: str = PROGRAM):
    """None, or a Python int >= `minimum` (an optional size such as `proj_size`)."""
    return None if value is None else check_size(name, value, minimum, what=what)


def check_index(name: str, value, count: int, counted: str) -> int:
    """A Python int in `[0, count)`, e.g. a process index or a member of a population.

    `counted` names what is counted ("processes", "members").
    """
    number = scalar(name, value)
    if not _is_int(number):
        raise TypeError(
            f"{name} must be an int in [0, {count}) ({count} {counted}); got {value!r} "
            f"({type(value).__name__})."
        )
    if not 0 <= number < count:
        raise ValueError(
            f"{name} must be an int in [0, {count}) ({count} {counted}); got {value!r}."
        )
    return int(number)


def _real_number(name: str, value, what: str) -> float:
    """A real scalar, taken by the one rule (`scalar`), as a Python float; not a bool."""
    number = scalar(name, value, what)
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__}).")
    return float(number)


def check_real(name: str, value, *, what: str = PROGRAM) -> float:
    """A finite real number, taken by the one rule (`scalar`). Returned as a Python float."""
    number = _real_number(name, value, what)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    return number


def check_positive(name: str, value, *, what: str = PROGRAM) -> float:
    """A finite real number > 0 (a tolerance, a step), taken as `check_real` takes it."""
    number = _real_number(name, value, what)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
    return number


def check_nonnegative(name: str, value, *, what: str = PROGRAM) -> float:
    """A finite real number >= 0 (a damping, a noise scale), taken as `check_real` takes it."""
    number = _real_number(name, value, what)
    if not (number >= 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be >= 0 and finite; got {value!r}.")
    return number


def check_rate(name: str, value, *, what: str = PROGRAM) -> float:
    """A probability in [0, 1) (dropout, zoneout), taken as `check_real` takes it."""
    rate = check_real(name, value, what=what)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must lie in [0, 1); got {value!r}.")
    return rate


def check_bool(name: str, value, *, how: str = "") -> bool:
    """True or False, taken by the one rule (`np.True_` is True); returned as a Python bool.

    A traced value is refused: a flag chooses the code path when tracing.
    `how` says how to make it static where there is a better way than the
    default advice (e.g. `static_argnames=...`).
    """
    if is_traced(value):
        raise TypeError(
            f"{name} must be a Python bool (it chooses the code path when tracing); got a "
            "traced value (from inside jax.jit, vmap or grad). "
            + (how or "Pass True or False from outside the transformed function.")
        )
    flag = scalar(name, value)
    if not isinstance(flag, bool):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return flag


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

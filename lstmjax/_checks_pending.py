"""Generic value checks written on the `hostile-training` branch, due to move into `_checks.py`.

They live apart only while another branch edits `_checks.py` (its numeric-scalar
rule); they are ground-floor checks like those there and import nothing else
from lstmjax.
"""

from __future__ import annotations

import numbers

import jax
import jax.core
import numpy as np

from lstmjax._checks import check_real


def _traced(value) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def check_concrete(name: str, value, what: str = "the cell") -> None:
    """Refuse a traced value where a number fixes a configuration (a cell's, a net's).

    A cell or a net is a static value that `jit` hashes, so its options must
    be known when it is built, not traced inside `jit`, `vmap` or `grad`.
    """
    if _traced(value):
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


def check_static_bool(name: str, value, how: str) -> bool:
    """True or False as a Python value; a traced bool says how to make it static (`how`)."""
    if _traced(value):
        raise TypeError(
            f"{name} must be a Python bool (it chooses the code path when tracing); got a "
            f"traced value. {how}"
        )
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return bool(value)

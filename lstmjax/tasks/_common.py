"""Argument checks shared by the task generators."""

from __future__ import annotations


def check_int(name: str, value, minimum: int = 1) -> int:
    """Return `value` if it is an int >= `minimum`, else raise a clear error."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return value

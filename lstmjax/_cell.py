"""The `Cell` type shared by every recurrent cell.

A cell is a NamedTuple of pure functions plus the static sizes the layers
need. The step is split in two so that `unroll` may compute the input
projection of all time steps at once (one big matmul) or inside each step,
whichever measures faster on the backend, without a second implementation
of any cell:

    step(params, carry, x) == recur(params, carry, project(params, x))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._checks import check_carry, check_features, check_float

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a NamedTuple of arrays, one type per cell
Carry = Any  # an array, or a NamedTuple of arrays (LSTM: (h, c))
Initializer = Callable[..., Array]  # any jax.nn.initializers function


class Cell(NamedTuple):
    """A recurrent cell as pure functions.

    Attributes:
      init: `(key, input_size) -> params`.
      initial_carry: `(batch_shape) -> carry` of zeros, each leaf
        `[*batch_shape, size]`.
      step: `(params, carry, x) -> (carry, y)` with `x: [..., input_size]`
        and `y: [..., output_size]`.
      project: `(params, x) -> px`, the part of a step that depends on `x`
        alone (`x @ w_x + b`, every gate fused), `px: [..., gates*hidden]`.
      recur: `(params, carry, px) -> (carry, y)`, the rest of the step.
      hidden_size: units in the recurrent state.
      output_size: size of `y` (equal to `hidden_size` except for Jordan).
      name: short name, for messages and plots.
    """

    init: Callable[[PRNGKey, int], Params]
    initial_carry: Callable[..., Carry]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    project: Callable[[Params, Array], Array]
    recur: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    hidden_size: int
    output_size: int
    name: str


def make_step(project, recur, initial_carry, name: str):
    """Compose `project` and `recur` into a checked one-step function.

    The checks (dtype, feature size, carry shapes) run at trace time only.
    """

    def step(params, carry, x):
        check_float(x, "x")
        check_features(x, params.w_x.shape[0], name)
        expected = jax.eval_shape(lambda: initial_carry(jnp.shape(x)[:-1]))
        carry = check_carry(carry, expected, name)
        return recur(params, carry, project(params, x))

    return step


def batch_shape_tuple(batch_shape) -> tuple[int, ...]:
    """Accept an int or a tuple for `initial_carry`'s batch shape."""
    if isinstance(batch_shape, int):
        return (batch_shape,)
    return tuple(batch_shape)


def check_size(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    return value

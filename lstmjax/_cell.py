"""The `Cell` type shared by every recurrent cell.

A cell is a NamedTuple of pure functions plus the static sizes the layers
need. The step is split in two so that `unroll` may compute the input
projection of all time steps at once (one big matmul) or inside each step,
whichever measures faster on the device, without a second implementation of
any cell. `step` is not stored: it is derived from the other two, so that

    cell.step(params, carry, x) == cell.recur(params, carry, cell.project(params, x))

holds for every cell, also after `cell._replace(recur=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._checks import check_carry, check_float, check_params, check_size

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a NamedTuple of arrays, one type per cell
Carry = Any  # an array, or a NamedTuple of arrays (LSTM: (h, c))
Initializer = Callable[..., Array]  # any jax.nn.initializers function


class Cell(NamedTuple):
    """A recurrent cell as pure functions.

    Build one with a factory (`lj.lstm(64)`), or for a cell of your own with
    keywords: `Cell(init=..., initial_carry=..., project=..., recur=...,
    hidden_size=..., output_size=..., name=...)`.

    Attributes:
      init: `(key, input_size) -> params`.
      initial_carry: `(batch_shape) -> carry` of zeros, each leaf
        `[*batch_shape, size]`.
      project: `(params, x) -> px`, the part of a step that depends on `x`
        alone (`x @ w_x + b`, every gate fused), `px: [..., gates*hidden]`.
      recur: `(params, carry, px) -> (carry, y)`, the rest of the step.
      hidden_size: units in the recurrent state.
      output_size: size of `y` (equal to `hidden_size` except for Jordan).
      name: short name, for messages and plots.
      linear_in_carry: True when `recur` is affine in the carry (the min
        cells), so the whole sequence has an exact parallel solution.
    """

    init: Callable[[PRNGKey, int], Params]
    initial_carry: Callable[..., Carry]
    project: Callable[[Params, Array], Array]
    recur: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    hidden_size: int
    output_size: int
    name: str
    linear_in_carry: bool = False

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One step: `(params, carry, x: [..., input_size]) -> (carry, y: [..., output_size])`.

        Checks run at trace time only: dtype, the params against this cell,
        the carry's structure and shapes.
        """
        check_float(x, "x")
        if jnp.ndim(x) == 0:
            raise ValueError(f"{self.name}.step: x must have a feature axis; got a scalar.")
        check_params(self, params, jnp.shape(x)[-1], f"{self.name}.step")
        expected = jax.eval_shape(lambda: self.initial_carry(jnp.shape(x)[:-1]))
        carry = check_carry(carry, expected, f"{self.name}.step")
        return self.recur(params, carry, self.project(params, x))


def batch_shape_tuple(batch_shape) -> tuple[int, ...]:
    """Accept an int or a tuple for `initial_carry`'s batch shape."""
    if isinstance(batch_shape, int):
        return (check_size("batch_shape", batch_shape, minimum=0),)
    return tuple(check_size("batch_shape", b, minimum=0) for b in batch_shape)

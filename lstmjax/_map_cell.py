"""An autonomous map as a cell: `map_cell(f, size)`, so that the dynamics
instruments (`lyapunov_spectrum`, `fixed_points`) apply to any map, such as
an ODE integrator's step. Public as `lstmjax.dynamics.map_cell`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from lstmjax._cell import Cell, batch_shape_tuple
from lstmjax._checks import check_callable, check_size
from lstmjax._typing import Array


def map_cell(f: Callable[[Array], Array], size: int, *, name: str = "map") -> Cell:
    """A `Cell` for an autonomous map carry -> f(carry), ignoring its input.

    So that `lyapunov_spectrum` and `fixed_points` apply to any map, e.g. the
    RK4 step of an ODE: `map_cell(lambda y: tasks.rk4_step(f, 0.0, y, dt), 3)`.
    Its parameters are an empty tuple; feed it inputs `[B, T, 1]` (zeros).
    Two map cells are equal when they hold the same `f` (the same function
    object), size and name.

    Args:
      f: `[..., size] -> [..., size]`, acting on the last axis.
      size: D, the state size.
      name: for messages.
    """
    f = check_callable("map_cell: f", f)
    if not isinstance(name, str):
        raise TypeError(f"map_cell: name must be a str; got {name!r} ({type(name).__name__}).")
    return MapCell(f=f, size=check_size("map_cell: size", size), name=name)


@dataclasses.dataclass(frozen=True)
class MapCell(Cell):
    """An autonomous map as a cell (built by `map_cell`); carry `h: [..., size]`."""

    f: Callable[[Array], Array]
    size: int
    # A field here (a property on Cell); the default shadows that property.
    name: str = "map"  # type: ignore[assignment]

    @property
    def hidden_size(self) -> int:
        return self.size

    @property
    def output_size(self) -> int:
        return self.size

    def init(self, key, input_size: int) -> tuple:
        return ()

    def initial_carry(self, batch_shape=()) -> Array:
        return jnp.zeros(batch_shape_tuple(batch_shape) + (self.size,))

    def project(self, params, x: Array) -> Array:
        return x

    def recur(self, params, carry: Array, px: Array):
        new = self.f(carry)
        return new, new

    def output(self, carry: Array) -> Array:
        return carry

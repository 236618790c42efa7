"""The `Cell` type shared by every recurrent cell, and the checks of its contract.

A cell is an immutable value: a frozen dataclass holding its configuration
(sizes, options, initialisers, dtype) with pure methods. Two cells built with
the same factory and options are equal and hash equal, so `jax.jit` reuses
one compiled program for both; a cell is a pytree with no leaves, so it may
also be passed to a jitted function as an ordinary argument.

The step is split in two so that `unroll` may compute the input projection
of all time steps at once (one big matmul) or inside each step, whichever
measures faster on the device, without a second implementation of any cell.
`step` is derived from the other two:

    cell.step(params, carry, x) == cell.recur(params, carry, cell.project(params, x))

and every cell says how its output is read from its carry (`output`):

    carry_t, y_t = cell.recur(params, carry, px)   =>   y_t == cell.output(carry_t)

Structural checks of a cell's params and carry live here, next to the type.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._array_checks import check_float
from lstmjax._arrays import path_name, row
from lstmjax._checks import check_size
from lstmjax._typing import Array, Carry, Params, PRNGKey


@dataclasses.dataclass(frozen=True)
class Cell:
    """Base class of every cell: a frozen, hashable configuration with pure methods.

    Build one with a factory (`lj.lstm(64)`). A cell of your own is a frozen
    dataclass deriving from `Cell`, with fields for its configuration, the
    attributes `hidden_size` and `output_size` (fields or properties), and
    the methods below:

        @dataclasses.dataclass(frozen=True)
        class Leaky(lj.Cell):
            hidden_size: int
            rate: float = 0.5

            @property
            def output_size(self): return self.hidden_size
            def init(self, key, input_size):
                return jax.random.normal(key, (input_size, self.hidden_size)) * 0.1
            def initial_carry(self, batch_shape=()):
                return jnp.zeros(lj.batch_shape_tuple(batch_shape) + (self.hidden_size,))
            def project(self, params, x): return x @ params
            def recur(self, params, h, px):
                h = (1 - self.rate) * h + self.rate * jnp.tanh(px)
                return h, h
            def output(self, h): return h

    Methods:
      init: `(key, input_size) -> params`.
      initial_carry: `(batch_shape) -> carry` of zeros, each leaf
        `[*batch_shape, size]`.
      project: `(params, x) -> px`, the part of a step that depends on `x`
        alone (`x @ w_x + b`, every gate fused), `px: [..., gates*hidden]`.
      recur: `(params, carry, px) -> (carry, y)`, the rest of the step.
      output: `carry -> y`, how the output is read from the new carry.
      step: `(params, carry, x) -> (carry, y)`, derived (checked at trace time).

    Attributes:
      hidden_size: units in the recurrent state.
      output_size: size of `y` (equal to `hidden_size` except for Jordan and
        the projected LSTM).
      name: short name, for messages and plots (the class name by default).
      linear_in_carry: True when `recur` is affine in every carry leaf (the
        min cells), so the whole sequence has an exact parallel solution.
      stabilised_linear: True when `recur` is affine in the carry's memories
        once its log-space stabiliser m is known, and m follows
        m_t = max(m_{t-1} + log f_t, i~_t) from the inputs alone (the
        mLSTM): it too has an exact parallel solution
        (`_affine.stabilised_pass`, which reads the cell's `log_gates`,
        `coefficients`, `readout`, `unpack` and `pack`). Cells that wrap
        another one do not inherit it: their changes may break that form.
      reads_h: True (default) when `recur` reads the carried output h_{t-1},
        where recurrent dropout acts; False for the mLSTM, whose gates read
        x_t alone (recurrent dropout refuses it rather than do nothing).
      scaled_carry: True when the carry holds memories scaled by exp(-m)
        with a stabiliser m (the xLSTM cells): zoneout and state noise, which
        change each carry unit on its own, are refused, since keeping or
        perturbing a scaled memory apart from its m is not what they mean.
    """

    linear_in_carry: ClassVar[bool] = False
    stabilised_linear: ClassVar[bool] = False
    reads_h: ClassVar[bool] = True
    scaled_carry: ClassVar[bool] = False

    if TYPE_CHECKING:
        # Every cell has these, as fields or properties. Declared for type checkers
        # only, and as properties: a field here would come first in every cell's
        # __init__, and a property at run time would be every field's default.

        @property
        def hidden_size(self) -> int: ...

        @property
        def output_size(self) -> int: ...

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A pytree without leaves: the whole value is static (hashed by jit).
        jax.tree_util.register_static(cls)

    @property
    def name(self) -> str:
        return type(self).__name__

    def init(self, key: PRNGKey, input_size: int) -> Params:
        raise NotImplementedError(f"{type(self).__name__} must define init(key, input_size).")

    def initial_carry(self, batch_shape: int | tuple[int, ...] = ()) -> Carry:
        raise NotImplementedError(f"{type(self).__name__} must define initial_carry(batch_shape).")

    def project(self, params: Params, x: Array) -> Array:
        raise NotImplementedError(f"{type(self).__name__} must define project(params, x).")

    def recur(self, params: Params, carry: Carry, px: Array) -> tuple[Carry, Array]:
        raise NotImplementedError(f"{type(self).__name__} must define recur(params, carry, px).")

    def output(self, carry: Carry) -> Array:
        raise NotImplementedError(f"{type(self).__name__} must define output(carry).")

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


@dataclasses.dataclass(frozen=True)
class WrappedCell(Cell):
    """A cell that changes part of another one (`cell`): every method delegates to it.

    Subclasses (recurrent dropout's cells) override what they change.
    """

    cell: Cell

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def linear_in_carry(self) -> bool:  # type: ignore[override]
        return self.cell.linear_in_carry

    @property
    def reads_h(self) -> bool:  # type: ignore[override]
        return self.cell.reads_h

    @property
    def scaled_carry(self) -> bool:  # type: ignore[override]
        return self.cell.scaled_carry

    def init(self, key: jax.Array, input_size: int) -> Params:
        return self.cell.init(key, input_size)

    def initial_carry(self, batch_shape: int | tuple[int, ...] = ()) -> Carry:
        return self.cell.initial_carry(batch_shape)

    def project(self, params: Params, x: Array) -> Array:
        return self.cell.project(params, x)

    def recur(self, params: Params, carry: Carry, px: Array) -> tuple[Carry, Array]:
        return self.cell.recur(params, carry, px)

    def output(self, carry: Carry) -> Array:
        return self.cell.output(carry)


# --- small helpers shared by the cells --------------------------------------------


def batch_shape_tuple(batch_shape) -> tuple[int, ...]:
    """`initial_carry`'s batch shape: an int or a sequence of ints (each by the one rule)."""
    if isinstance(batch_shape, (tuple, list)) or np.ndim(batch_shape) == 1:
        return tuple(
            check_size(f"batch_shape[{i}]", b, minimum=0) for i, b in enumerate(batch_shape)
        )
    return (check_size("batch_shape", batch_shape, minimum=0),)


def zeros_state(batch_shape, size: int, dtype) -> Array:
    """A state of zeros `[*batch_shape, size]`."""
    return jnp.zeros(batch_shape_tuple(batch_shape) + (size,), dtype)


def dense_projection(params: Any, x: Array) -> Array:
    """`x @ params.w_x + params.b`: the input projection of most cells."""
    return x @ params.w_x + row(params.b, x)


# --- the contract's checks ------------------------------------------------------------


def check_cell(cell, where: str) -> Cell:
    """`cell` must be a `Cell` (a factory's result), not the factory itself."""
    if isinstance(cell, Cell):
        return cell
    if callable(cell) and getattr(cell, "__module__", "").startswith("lstmjax"):
        name = getattr(cell, "__name__", repr(cell))
        raise TypeError(
            f"{where}: cell must be a Cell; got the factory lstmjax.{name} itself. "
            f"Call it with a hidden size first, e.g. lj.{name}(64)."
        )
    raise TypeError(f"{where}: cell must be a Cell (e.g. lj.lstm(64)); got {type(cell).__name__}.")


def check_params(cell: Cell, params, input_size: int, where: str, name: str = "params") -> None:
    """Check `params` against what `cell.init(key, input_size)` would give.

    Type (a cell names the params type it expects), fields, every shape and
    a real dtype. `input_size` is the feature size of the user's inputs, so a
    mismatch is reported as such when the params carry a `w_x: [I, ...]` field.
    """
    hint = f"create them with cell.init(key, input_size={input_size})"
    if params is None:
        raise TypeError(f"{where}: {name} is None; {hint}.")
    expected = jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size))
    if type(params) is not type(expected):
        raise TypeError(
            f"{where}: cell {cell.name!r} expects {name} of type {type(expected).__name__}; "
            f"got {type(params).__name__}. Parameters of one cell cannot drive another; {hint}."
        )
    w_x = getattr(params, "w_x", None)
    if w_x is not None and jnp.ndim(w_x) == 2 and jnp.shape(w_x)[0] != input_size:
        raise ValueError(
            f"{where}: the inputs have {input_size} features but {name}.w_x has shape "
            f"{jnp.shape(w_x)}, i.e. the parameters expect input_size={jnp.shape(w_x)[0]}."
        )
    got = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda v: v is None)[0]
    want = jax.tree_util.tree_flatten(expected, is_leaf=lambda v: v is None)[0]
    if len(got) != len(want):
        raise ValueError(
            f"{where}: {name} has {len(got)} leaves, but cell {cell.name!r} expects "
            f"{len(want)}; {hint}."
        )
    for (path, g), w in zip(got, want, strict=True):
        leaf = path_name(name, path)
        if (g is None) != (w is None):
            state = "is None" if g is None else f"has shape {jnp.shape(g)}"
            wanted = "None" if w is None else f"an array of shape {w.shape}"
            raise ValueError(
                f"{where}: {leaf} {state}, but cell {cell.name!r} expects {wanted} "
                "(the params were made by a cell with other options)."
            )
        if g is None:
            continue
        if jnp.shape(g) != w.shape:
            raise ValueError(
                f"{where}: {leaf} has shape {jnp.shape(g)}, but cell {cell.name!r} "
                f"(hidden_size={cell.hidden_size}) with input_size={input_size} expects "
                f"{w.shape}; {hint}."
            )
        check_float(g, leaf)


def check_carry(carry, expected, where: str, name: str = "carry"):
    """Check that `carry` has the structure, shapes and a real dtype of `expected`.

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
        raise ValueError(f"{where}: {name} has structure {got_def}, expected {want_def}.")
    got_leaves = jax.tree_util.tree_leaves_with_path(carry)
    for (path, got), want in zip(got_leaves, jax.tree_util.tree_leaves(expected), strict=True):
        leaf = path_name(name, path)
        if jnp.shape(got) != jnp.shape(want):
            raise ValueError(
                f"{where}: {leaf} has shape {jnp.shape(got)}, expected {jnp.shape(want)} "
                "(the batch shape of the inputs followed by the state size)."
            )
        check_float(got, leaf)
    return carry


def initial_carry_for(cell: Cell, carry, batch: int, dtype, where: str) -> Carry:
    """The checked initial carry of a batch of `batch` sequences, cast to `dtype`.

    None gives zeros; anything else is checked against the cell's carry
    (`check_carry`: structure, shapes `[batch, ...]`, a real dtype).
    """
    expected = jax.eval_shape(lambda: cell.initial_carry((batch,)))
    if carry is None:
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, dtype), expected)
    carry = check_carry(carry, expected, where)
    return jax.tree_util.tree_map(lambda c: jnp.asarray(c, dtype), carry)

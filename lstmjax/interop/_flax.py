"""Flax interop: lstmjax cells inside `flax.linen`, and Flax cell weights in lstmjax.

Two directions:

* `flax_cell(cell)` wraps any lstmjax `Cell` as a `flax.linen` recurrent cell
  (an `nn.RNNCellBase`), so it runs wherever Flax expects one, e.g.
  `nn.RNN(lj.interop.flax_cell(lj.lstm(8)))`.
* `from_flax(module, variables)` reads the weights of a Flax `LSTMCell`,
  `OptimizedLSTMCell`, `GRUCell` or `SimpleCell` into lstmjax params.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, overload

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstmjax._cell import Cell, check_cell
from lstmjax._gru import GRUParams, gru
from lstmjax._lstm import LSTMCarry, LSTMParams, lstm
from lstmjax._rnn import RNNParams, rnn
from lstmjax._typing import Array, Carry, Params, PRNGKey

PARAM_NAME = "cell_params"  # the one Flax param that holds the lstmjax params


class FlaxCell(nn.RNNCellBase):
    """A `flax.linen` recurrent cell that runs an lstmjax `Cell`.

    Its only parameter, `"cell_params"`, is the cell's params NamedTuple
    (e.g. `LSTMParams(w_x, w_h, b, peephole)`), created by
    `cell.init(key, input_size)` on the first call, with `input_size` read
    from the inputs. So lstmjax params `p` run in Flax as
    `{"params": {"cell_params": p}}` for the bare cell, and as
    `{"params": {"cell": {"cell_params": p}}}` inside `nn.RNN` (whose
    submodule is named "cell").

    Attributes:
      cell: the lstmjax cell.
    """

    cell: Cell

    @nn.compact
    def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
        """One step: `inputs: [..., input_size]` -> `(carry, y: [..., output_size])`.

        The carry is the lstmjax one (for the LSTM `LSTMCarry(h, c)`, not
        Flax's `(c, h)`).
        """
        params = self.param(PARAM_NAME, self.cell.init, jnp.shape(inputs)[-1])
        return self.cell.step(params, carry, inputs)

    @nn.nowrap
    def initialize_carry(self, rng: PRNGKey, input_shape: tuple[int, ...]) -> Carry:
        """Zeros for inputs of shape `input_shape = (*batch, input_size)`.

        `rng` is unused: lstmjax carries start at zero.
        """
        del rng
        return self.cell.initial_carry(tuple(input_shape[:-1]))

    @property
    def num_feature_axes(self) -> int:
        return 1


def flax_cell(cell: Cell) -> FlaxCell:
    """Wrap an lstmjax cell as a `flax.linen` recurrent cell.

        rnn = nn.RNN(lj.interop.flax_cell(lj.lstm(8)))
        variables = rnn.init(key, xs)           # params from lj.lstm(8).init
        ys = rnn.apply(variables, xs)           # == lj.unroll(cell, p, xs)[0]

    Args:
      cell: any lstmjax `Cell` (`lj.rnn`, `lj.lstm`, `lj.gru`, `lj.jordan`).

    Returns:
      A `FlaxCell` module; see its docstring for where the params live.
    """
    return FlaxCell(cell=check_cell(cell, "flax_cell"))


@overload
def _dense(
    params: Mapping, name: str, expected: tuple[str, ...], bias: Literal[True]
) -> tuple[Array, Array]: ...


@overload
def _dense(
    params: Mapping, name: str, expected: tuple[str, ...], bias: Literal[False]
) -> tuple[Array, None]: ...


def _dense(params: Mapping, name: str, expected: tuple[str, ...], bias: bool):
    """`(kernel [in, out], bias [out] or None)` of the Flax Dense layer `name`."""
    if name not in params:
        raise ValueError(
            f"from_flax: the Flax params have no layer '{name}'; expected layers "
            f"{list(expected)}, got {sorted(params)}."
        )
    layer = params[name]
    return layer["kernel"], (layer["bias"] if bias else None)


def _unwrap(variables: Mapping) -> Mapping:
    """Accept either `{"params": {...}}` (what `init` returns) or the inner dict."""
    return variables["params"] if "params" in variables else variables


def _require(module, field: str, expected, what: str) -> None:
    if getattr(module, field) is not expected:
        raise ValueError(
            f"from_flax: {type(module).__name__}.{field} must be {what} to match "
            f"lstmjax; got {getattr(module, field)!r}."
        )


def _lstm_from_flax(module, p: Mapping) -> tuple[Cell, LSTMParams]:
    _require(module, "gate_fn", jax.nn.sigmoid, "sigmoid")
    _require(module, "activation_fn", jnp.tanh, "tanh")
    names = ("ii", "if", "ig", "io", "hi", "hf", "hg", "ho")
    # Input layers carry no bias in Flax; the recurrent ones (hi...ho) do.
    w_x = [_dense(p, "i" + g, names, bias=False)[0] for g in "ifgo"]
    hidden = [_dense(p, "h" + g, names, bias=True) for g in "ifgo"]
    params = LSTMParams(
        w_x=jnp.concatenate(w_x, axis=1),
        w_h=jnp.concatenate([k for k, _ in hidden], axis=1),
        b=jnp.concatenate([b for _, b in hidden]),
        peephole=None,
    )
    return lstm(module.features, dtype=params.w_x.dtype), params


def _gru_from_flax(module, p: Mapping) -> tuple[Cell, GRUParams]:
    _require(module, "gate_fn", jax.nn.sigmoid, "sigmoid")
    _require(module, "activation_fn", jnp.tanh, "tanh")
    names = ("ir", "iz", "in", "hr", "hz", "hn")
    # Input layers carry the biases; of the recurrent ones only hn has one.
    inputs = [_dense(p, "i" + g, names, bias=True) for g in "rzn"]
    w_h = [_dense(p, "h" + g, names, bias=False)[0] for g in "rzn"]
    params = GRUParams(
        w_x=jnp.concatenate([k for k, _ in inputs], axis=1),
        w_h=jnp.concatenate(w_h, axis=1),
        b=jnp.concatenate([b for _, b in inputs]),
        b_hn=_dense(p, "hn", names, bias=True)[1],
    )
    return gru(module.features, reset_after=True, dtype=params.w_x.dtype), params


def _simple_from_flax(module, p: Mapping) -> tuple[Cell, RNNParams]:
    if module.residual:
        raise ValueError(
            "from_flax: SimpleCell(residual=True) adds h_{t-1} before the activation; "
            "lj.rnn has no such term. Expected residual=False."
        )
    names = ("i", "h")
    w_x, b = _dense(p, "i", names, bias=True)
    w_h, _ = _dense(p, "h", names, bias=False)
    params = RNNParams(w_x=w_x, w_h=w_h, b=b)
    return rnn(module.features, activation=module.activation_fn, dtype=w_x.dtype), params


def from_flax(module: nn.Module, variables: Mapping) -> tuple[Cell, Params]:
    """Read a Flax recurrent cell's weights into an lstmjax cell and params.

    Flax keeps one `Dense` layer per gate and input, with `kernel [in, out]`
    (already our orientation: nothing is transposed). The kernels are
    concatenated along the output axis in lstmjax's gate order:

      `nn.LSTMCell` / `nn.OptimizedLSTMCell` -> `lj.lstm(features)`:
        w_x = [ii | if | ig | io].kernel, w_h = [hi | hf | hg | ho].kernel,
        b = [hi | hf | hg | ho].bias (Flax's input layers have no bias).
        Flax's carry is `(c, h)`; ours is `LSTMCarry(h, c)` (see `carry_from_flax`).
      `nn.GRUCell` -> `lj.gru(features, reset_after=True)`:
        w_x = [ir | iz | in].kernel, w_h = [hr | hz | hn].kernel,
        b = [ir | iz | in].bias, b_hn = hn.bias. Flax's update
        h' = (1 - z) n + z h is ours.
      `nn.SimpleCell` -> `lj.rnn(features, activation=module.activation_fn)`:
        w_x = i.kernel, b = i.bias, w_h = h.kernel.

    The cell's dtype is the kernels' dtype.

    Args:
      module: the Flax cell (its configuration is read: features, gate and
        activation functions must be the standard ones).
      variables: its variables, `{"params": {...}}` as returned by `init`, or
        the inner params dict.

    Returns:
      `(cell, params)` with `cell.step(params, carry, x)` equal to
      `module.apply(variables, flax_carry, x)`.
    """
    p = _unwrap(variables)
    if isinstance(module, (nn.LSTMCell, nn.OptimizedLSTMCell)):
        return _lstm_from_flax(module, p)
    if isinstance(module, nn.GRUCell):
        return _gru_from_flax(module, p)
    if isinstance(module, nn.SimpleCell):
        return _simple_from_flax(module, p)
    raise TypeError(
        "from_flax expects a flax.linen LSTMCell, OptimizedLSTMCell, GRUCell or "
        f"SimpleCell; got {type(module).__name__}."
    )


_FLAX_CELLS = (nn.LSTMCell, nn.OptimizedLSTMCell, nn.GRUCell, nn.SimpleCell)


def _check_flax_cell(module: Any, where: str) -> bool:
    """True for Flax's LSTM cells; TypeError for anything but the four supported cells."""
    if not isinstance(module, _FLAX_CELLS):
        raise TypeError(
            f"{where}: module must be a flax.linen LSTMCell, OptimizedLSTMCell, GRUCell or "
            f"SimpleCell (the cell whose carry this is); got {type(module).__name__}."
        )
    return isinstance(module, (nn.LSTMCell, nn.OptimizedLSTMCell))


def _check_state(where: str, name: str, value: Any) -> None:
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{where}: {name} must be an array; got {type(value).__name__}.")


def carry_from_flax(module: nn.Module, carry: Any) -> Carry:
    """Convert a Flax cell's carry to the lstmjax one.

    Flax's LSTM cells carry `(c, h)`; lstmjax's carry `LSTMCarry(h, c)`. The
    GRU and simple cells carry `h` in both.

    Raises:
      TypeError: `module` is not one of the four Flax cells, or `carry` is
        not that cell's carry (a pair of arrays for the LSTMs, an array for
        the others).
    """
    where = "carry_from_flax"
    if _check_flax_cell(module, where):
        if not isinstance(carry, (tuple, list)) or len(carry) != 2:
            length = f" of length {len(carry)}" if isinstance(carry, (tuple, list)) else ""
            raise TypeError(
                f"{where}: a Flax {type(module).__name__} carries the pair (c, h); got "
                f"{type(carry).__name__}{length}."
            )
        c, h = carry
        _check_state(where, "carry[0] (c)", c)
        _check_state(where, "carry[1] (h)", h)
        return LSTMCarry(h=h, c=c)
    _check_state(where, "carry", carry)
    return carry


def carry_to_flax(module: nn.Module, carry: Carry) -> Any:
    """The inverse of `carry_from_flax`: `LSTMCarry(h, c)` -> Flax's `(c, h)`.

    Raises:
      TypeError: `module` is not one of the four Flax cells, or `carry` is
        not the lstmjax carry of that cell (an `LSTMCarry` for the LSTMs: a
        plain pair is refused, as its order cannot be told; an array for
        the others).
    """
    where = "carry_to_flax"
    if _check_flax_cell(module, where):
        if not isinstance(carry, LSTMCarry):
            raise TypeError(
                f"{where}: the carry of a Flax {type(module).__name__} comes from an lstmjax "
                f"LSTMCarry(h, c); got {type(carry).__name__}. A plain pair is refused, as "
                "(h, c) and Flax's (c, h) cannot be told apart: pass lj.LSTMCarry(h, c)."
            )
        _check_state(where, "carry.h", carry.h)
        _check_state(where, "carry.c", carry.c)
        return (carry.c, carry.h)
    _check_state(where, "carry", carry)
    return carry

"""Cells are values: equal configurations are equal cells and share one compiled program.

Claims, for every cell of `cell_zoo` and the cells built around another one
(layer-normalised LSTM, `map_cell`, recurrent dropout's wrappers):
  * a second build with the same options is equal and hashes equal; a build
    with another hidden size (or other options) is not equal;
  * a cell is a pytree with no leaves;
  * the output a step returns is the cell's `output` of the new carry, exactly;
  * `jax.jit` over `lj.unroll` traces once for two separately built equal
    cells, with the cell static (`static_argnums`) or as an ordinary argument,
    and once more for an unequal one (the count is not blind).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_zoo import CORE_FACTORIES, CORE_IDS, INPUT_SIZE

import lstmjax as lj
from lstmjax import dynamics

B, T = 2, 4
KEY = jax.random.key(0)


def _dropped(**rates):
    """A cell wrapped by `recurrent_dropout` (a key: masked; no key: expected zoneout)."""

    def build(hidden=5, key=KEY):
        xs = jnp.ones((B, T, INPUT_SIZE))
        cell = lj.lstm(hidden)
        params = cell.init(KEY, INPUT_SIZE)
        evaluate = key is None
        return lj.recurrent_dropout(cell, params, xs, key=key, deterministic=evaluate, **rates)[0]

    return build


# Cells around or beside the zoo's: (id, build(hidden) -> cell).
WRAPPED = {
    "lstm_ln": lambda hidden=5: lj.lstm(hidden, peephole=True, layer_norm=True),
    "map_cell": lambda hidden=3: dynamics.map_cell(jnp.sin, hidden, name="sin"),
    "masked": _dropped(recurrent_dropout=0.25, zoneout=0.1, state_noise=0.05),
    "expected_zoneout": lambda hidden=5: _dropped(zoneout=0.1)(hidden, key=None),
}
ZOO = dict(zip(CORE_IDS, CORE_FACTORIES, strict=True))
NAMES = sorted(ZOO) + sorted(WRAPPED)


def build(name, hidden=None):
    """A fresh build of cell `name` (its default hidden size unless `hidden` is given)."""
    factory = ZOO[name] if name in ZOO else WRAPPED[name]
    return factory() if hidden is None else factory(hidden=hidden)


def input_size(cell) -> int:
    """Inputs of a wrapped masked cell carry its mask channels too."""
    return INPUT_SIZE + getattr(cell, "extra", 0)


def random_state(cell, key):
    """Params, a non-zero carry and a projected input for one step of `cell`."""
    k_p, k_c, k_x = jax.random.split(key, 3)
    params = cell.init(k_p, input_size(cell))
    like = cell.initial_carry((B,))
    leaves, treedef = jax.tree_util.tree_flatten(like)
    keys = jax.random.split(k_c, len(leaves))
    carry = treedef.unflatten(
        [0.5 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    )
    x = jax.random.normal(k_x, (B, input_size(cell)))
    return params, carry, cell.project(params, x)


@pytest.mark.parametrize("name", NAMES)
def test_equal_options_give_equal_cells_and_other_sizes_do_not(name):
    a, b = build(name), build(name)
    assert a is not b
    assert a == b
    assert hash(a) == hash(b)
    other = build(name, hidden=a.hidden_size + 2)
    assert other.hidden_size == a.hidden_size + 2
    assert a != other


@pytest.mark.parametrize("name", NAMES)
def test_a_cell_is_a_pytree_without_leaves(name):
    cell = build(name)
    assert jax.tree_util.tree_leaves(cell) == []
    leaves, treedef = jax.tree_util.tree_flatten(cell)
    assert jax.tree_util.tree_unflatten(treedef, leaves) == cell


@pytest.mark.parametrize("name", NAMES)
def test_the_step_output_is_the_output_of_the_new_carry(name):
    cell = build(name)
    params, carry, px = random_state(cell, jax.random.key(1))
    new, y = cell.recur(params, carry, px)
    assert y.shape == (B, cell.output_size)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(cell.output(new)))
    assert float(jnp.max(jnp.abs(y))) > 0.0  # a real output, not zeros on both sides


@pytest.mark.parametrize("static", [True, False], ids=["static_argnums", "argument"])
@pytest.mark.parametrize("name", NAMES)
def test_jit_traces_once_for_two_equal_cells(name, static):
    traces = []

    def run(cell, params, xs):
        traces.append(cell)
        return lj.unroll(cell, params, xs)

    run = jax.jit(run, static_argnums=0) if static else jax.jit(run)
    first, second = build(name), build(name)
    params = first.init(KEY, input_size(first))
    xs = jax.random.normal(jax.random.key(2), (B, T, input_size(first)))
    ys_first, _ = run(first, params, xs)
    ys_second, _ = run(second, params, xs)
    assert len(traces) == 1
    np.testing.assert_array_equal(np.asarray(ys_first), np.asarray(ys_second))
    # An unequal cell (another hidden size) is traced anew: the count sees retraces.
    other = build(name, hidden=first.hidden_size + 2)
    xs_other = jax.random.normal(jax.random.key(2), (B, T, input_size(other)))
    run(other, other.init(KEY, input_size(other)), xs_other)
    assert len(traces) == 2


def test_options_are_normalised_before_they_are_compared():
    assert lj.lstm(8) == lj.lstm(8)
    assert lj.lstm(8) != lj.lstm(9)
    assert lj.lstm(8, dtype="float32") == lj.lstm(8, dtype=jnp.float32)
    assert lj.lstm(8, forget_bias=1) == lj.lstm(8)
    assert lj.lstm(8, peephole=True) != lj.lstm(8)
    assert lj.gru(8, reset_after=False) != lj.gru(8)
    assert lj.rnn(4, activation="tanh") == lj.rnn(4, activation=jnp.tanh)
    taus = [1.0, 2.0, 3.0, 4.0]
    assert lj.ctrnn(4, tau=taus) == lj.ctrnn(4, tau=taus)
    assert lj.ctrnn(4, tau=taus) == lj.ctrnn(4, tau=np.array(taus))
    assert hash(lj.ctrnn(4, tau=taus)) == hash(lj.ctrnn(4, tau=tuple(taus)))
    assert lj.ctrnn(4, tau=taus) != lj.ctrnn(4, tau=[1.0, 2.0, 3.0, 5.0])
    assert lj.ctrnn(4, tau=2) == lj.ctrnn(4, tau=2.0)
    assert lj.ctrnn(4) != lj.ctrnn(4, integrator="rk4")


def test_names_and_sizes_are_those_of_the_factories():
    assert lj.lstm(5).name == "lstm"
    assert lj.lstm(5, peephole=True, layer_norm=True, proj_size=3).name == "lstm_peephole_ln_proj"
    assert (lj.lstm(5, proj_size=3).hidden_size, lj.lstm(5, proj_size=3).output_size) == (5, 3)
    assert lj.gru(5).name == "gru"
    assert lj.gru(5, reset_after=False).name == "gru_reset_before"
    assert lj.gru(5, layer_norm=True).name == "gru_ln"
    assert (lj.jordan(6, 4).name, lj.jordan(6, 4).output_size) == ("jordan", 4)
    assert (lj.ctrnn(5).name, lj.ctrnn(5, integrator="rk4").name) == ("ctrnn", "ctrnn_rk4")
    assert (lj.min_gru(5).name, lj.min_lstm(5).name) == ("min_gru", "min_lstm")
    assert lj.min_gru(5).linear_in_carry and lj.min_lstm(5).linear_in_carry
    assert not lj.lstm(5).linear_in_carry and not lj.gru(5).linear_in_carry
    assert dynamics.map_cell(jnp.sin, 3, name="sin").name == "sin"


def test_cells_are_frozen():
    cell = lj.lstm(5)
    with pytest.raises(AttributeError):
        cell.hidden_size = 6  # type: ignore[misc]

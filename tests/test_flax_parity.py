"""Flax parity, both ways.

1. `lj.interop.from_flax`: `lj.lstm`, `lj.gru` (reset_after) and `lj.rnn`
   with the weights of Flax's `LSTMCell` / `OptimizedLSTMCell`, `GRUCell` and
   `SimpleCell` give the same step and the same unrolled sequence as Flax.
2. `lj.interop.flax_cell`: every lstmjax cell run inside `flax.linen.RNN`
   gives the same outputs, final carry and parameter gradients as
   `lj.unroll`, with and without `seq_lengths`, forward and reversed.

The reference is Flax itself. Tolerances: 1e-6 in float32, 1e-12 in float64
(the two sides sum the gate matmuls in a different order, so they are not
bitwise equal).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax import interop
from lstmjax.interop._flax import PARAM_NAME

I, H, B, T = 3, 5, 3, 6
TOL = {jnp.float32: 1e-6, jnp.float64: 1e-12}
DTYPES = pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])

FLAX_CELLS = {
    "LSTMCell": nn.LSTMCell,
    "OptimizedLSTMCell": nn.OptimizedLSTMCell,
    "GRUCell": nn.GRUCell,
    "SimpleCell": nn.SimpleCell,
    "SimpleCell_relu": lambda **kw: nn.SimpleCell(activation_fn=nn.relu, **kw),
}


def assert_trees_close(got, want, tol):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=tol)


def normal(rng, shape, dtype):
    return jnp.asarray(0.5 * rng.standard_normal(shape), dtype)


def make_flax(name, dtype):
    """A Flax cell with random (non-zero) biases, its variables and the converted pair."""
    module = FLAX_CELLS[name](features=H, param_dtype=dtype)
    x = jnp.zeros((B, I), dtype)
    carry = module.initialize_carry(jax.random.key(1), x.shape)
    # Flax's own parameter tree, filled with random normals (cheaper than
    # compiling Flax's orthogonal initialiser, and every bias is non-zero).
    shapes = jax.eval_shape(module.init, jax.random.key(0), carry, x)
    variables = random_like(shapes, np.random.default_rng(9), dtype)
    cell, params = interop.from_flax(module, variables)
    return module, variables, cell, params


def random_like(tree, rng, dtype):
    return jax.tree_util.tree_map(lambda a: normal(rng, a.shape, dtype), tree)


@DTYPES
@pytest.mark.parametrize("name", list(FLAX_CELLS))
def test_from_flax_matches_flax(name, dtype):
    """One step and a whole sequence, from a random carry so that every weight acts."""
    module, variables, cell, params = make_flax(name, dtype)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(dtype)}
    rng = np.random.default_rng(0)
    xs = normal(rng, (B, T, I), dtype)
    c0 = random_like(module.initialize_carry(jax.random.key(1), (B, I)), rng, dtype)
    layer = nn.RNN(module, return_carry=True)

    @jax.jit
    def flax_side(variables, c0, xs):
        step = module.apply(variables, c0, xs[:, 0])
        return step, layer.apply({"params": {"cell": variables["params"]}}, xs, initial_carry=c0)

    @jax.jit
    def lj_side(params, c0, xs):
        return cell.step(params, c0, xs[:, 0]), lj.unroll(cell, params, xs, c0)

    (step_carry_f, y_f), (carry_f, ys_f) = flax_side(variables, c0, xs)
    (step_carry, y), (ys, carry) = lj_side(params, interop.carry_from_flax(module, c0), xs)
    tol = TOL[dtype]
    np.testing.assert_allclose(y, y_f, rtol=0, atol=tol)
    assert_trees_close(step_carry, interop.carry_from_flax(module, step_carry_f), tol)
    assert_trees_close(interop.carry_to_flax(module, step_carry), step_carry_f, tol)
    np.testing.assert_allclose(ys, ys_f, rtol=0, atol=tol)
    assert_trees_close(carry, interop.carry_from_flax(module, carry_f), tol)


# Every lstmjax cell kind; the tests fill their params with random normals.
LJ_CELLS = {
    "rnn": lambda dt: lj.rnn(H, dtype=dt),
    "rnn_relu": lambda dt: lj.rnn(H, activation=jax.nn.relu, dtype=dt),
    "lstm": lambda dt: lj.lstm(H, dtype=dt),
    "lstm_peephole": lambda dt: lj.lstm(H, peephole=True, dtype=dt),
    "gru": lambda dt: lj.gru(H, dtype=dt),
    "gru_reset_before": lambda dt: lj.gru(H, reset_after=False, dtype=dt),
    "jordan": lambda dt: lj.jordan(H, 4, dtype=dt),
}


def random_params(cell, dtype, seed):
    """Params of `cell`'s structure, all random normals.

    Non-zero biases and peepholes make every weight act; it also skips the
    costly orthogonal initialiser.
    """
    shapes = jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0))
    return random_like(shapes, np.random.default_rng(seed), dtype)


def flax_variables(params):
    """lstmjax params as the variables of `nn.RNN(flax_cell(cell))`."""
    return {"params": {"cell": {PARAM_NAME: params}}}


@pytest.mark.parametrize("name", list(LJ_CELLS))
def test_flax_cell_param_tree_is_cell_params(name):
    cell = LJ_CELLS[name](jnp.float32)
    xs = jnp.zeros((B, T, I), jnp.float32)
    variables = jax.eval_shape(nn.RNN(interop.flax_cell(cell)).init, jax.random.key(0), xs)
    params = variables["params"]["cell"][PARAM_NAME]
    expected = jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(expected)
    for got, want in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(expected), strict=True
    ):
        assert (got.shape, got.dtype) == (want.shape, want.dtype)


def test_flax_cell_init_runs_cell_init():
    """With key-independent initialisers, Flax's params equal `cell.init`'s exactly."""
    const = jax.nn.initializers.constant
    cell = lj.lstm(H, kernel_init=const(0.25), recurrent_init=const(-0.5), forget_bias=1.5)
    xs = jnp.zeros((B, T, I), jnp.float32)
    variables = nn.RNN(interop.flax_cell(cell)).init(jax.random.key(0), xs)
    params = variables["params"]["cell"][PARAM_NAME]
    assert_trees_close(params, cell.init(jax.random.key(1), I), 0.0)


def nn_rnn_and_unroll(cell):
    """Jitted: `nn.RNN(flax_cell(cell))` and `lj.unroll` on the same inputs.

    Without lengths, and with lengths forward and reversed (`keep_order=True`
    puts Flax's reversed outputs back in time order, as `unroll` returns them).
    """
    layer = nn.RNN(interop.flax_cell(cell), return_carry=True)

    # Flax returns (carry, ys) and lstmjax (ys, carry): [::-1] aligns them.
    @jax.jit
    def run(params, xs, lengths):
        flax_runs = [layer.apply(flax_variables(params), xs)[::-1]]
        lj_runs = [lj.unroll(cell, params, xs)]
        for reverse in (False, True):
            kwargs = dict(seq_lengths=lengths, reverse=reverse, keep_order=True)
            flax_runs.append(layer.apply(flax_variables(params), xs, **kwargs)[::-1])
            lj_runs.append(lj.unroll(cell, params, xs, lengths=lengths, reverse=reverse))
        return flax_runs, lj_runs

    return run


@pytest.mark.parametrize(
    "name, dtype",
    [(name, jnp.float64) for name in LJ_CELLS] + [("lstm", jnp.float32)],
    ids=[f"{name}-f64" for name in LJ_CELLS] + ["lstm-f32"],
)
def test_flax_cell_in_nn_rnn_equals_unroll(name, dtype):
    cell = LJ_CELLS[name](dtype)
    params = random_params(cell, dtype, seed=2)
    xs = normal(np.random.default_rng(3), (B, T, I), dtype)
    # Lengths >= 1: Flax picks the carry at index length - 1, and leaves the
    # outputs at padded steps unspecified, so only valid steps are compared.
    lengths = jnp.array([T, 2, 4])
    valid = (np.arange(T)[None, :] < np.asarray(lengths)[:, None])[..., None]
    flax_runs, lj_runs = nn_rnn_and_unroll(cell)(params, xs, lengths)
    for run, ((ys_f, carry_f), (ys, carry)) in enumerate(zip(flax_runs, lj_runs, strict=True)):
        mask = valid if run > 0 else np.ones_like(valid)
        np.testing.assert_allclose(np.where(mask, ys_f, 0), ys, rtol=0, atol=TOL[dtype])
        assert_trees_close(carry_f, carry, TOL[dtype])


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_flax_cell_gradients_equal_unroll(name):
    cell = LJ_CELLS[name](jnp.float64)
    params = random_params(cell, jnp.float64, seed=4)
    xs = normal(np.random.default_rng(5), (B, T, I), jnp.float64)
    layer = nn.RNN(interop.flax_cell(cell))

    grad_flax = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply(flax_variables(p), xs) ** 2)))
    grad_lj = jax.jit(jax.grad(lambda p: jnp.sum(lj.unroll(cell, p, xs)[0] ** 2)))
    assert_trees_close(grad_flax(params), grad_lj(params), 1e-12)


def test_from_flax_rejects_unknown_cells():
    module = nn.MGUCell(features=H)
    x = jnp.zeros((B, I), jnp.float32)
    carry = module.initialize_carry(jax.random.key(1), x.shape)
    variables = jax.eval_shape(module.init, jax.random.key(0), carry, x)
    with pytest.raises(TypeError, match="got MGUCell"):
        interop.from_flax(module, variables)


def test_from_flax_rejects_residual_and_other_gates():
    with pytest.raises(ValueError, match="residual=False"):
        interop.from_flax(nn.SimpleCell(features=H, residual=True), {})
    with pytest.raises(ValueError, match="gate_fn must be sigmoid"):
        interop.from_flax(nn.LSTMCell(features=H, gate_fn=nn.hard_sigmoid), {})


def test_from_flax_names_missing_layers():
    with pytest.raises(ValueError, match="no layer 'ir'"):
        interop.from_flax(nn.GRUCell(features=H), {"params": {"hr": {}}})


def test_flax_cell_rejects_non_cells():
    with pytest.raises(
        TypeError, match=r"flax_cell: cell must be a Cell \(e.g. lj.lstm\(64\)\); got LSTMCell"
    ):
        interop.flax_cell(nn.LSTMCell(features=H))

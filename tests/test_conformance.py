"""The conformance suite: every cell and option passes the same checks.

The reference for `unroll` is the plainest possible one: `cell.step` called
in a Python loop.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_zoo import CORE_FACTORIES, CORE_IDS, INPUT_SIZE
from conftest import PLACEMENTS, scan_method

import lstmjax as lj

B, T = 4, 7
TOL = dict(rtol=1e-6, atol=1e-6)  # float32: one code path vs another


def make(factory, dtype=jnp.float32, seed=0):
    cell = factory(dtype)
    params = cell.init(jax.random.key(seed), INPUT_SIZE)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, INPUT_SIZE), dtype)
    return cell, params, xs


def python_loop(cell, params, xs, carry=None):
    carry = cell.initial_carry((xs.shape[0],)) if carry is None else carry
    ys = []
    for t in range(xs.shape[1]):
        carry, y = cell.step(params, carry, xs[:, t])
        ys.append(y)
    return jnp.stack(ys, axis=1), carry


parametrize_cells = pytest.mark.parametrize("factory", CORE_FACTORIES, ids=CORE_IDS)


@parametrize_cells
def test_params_are_named_tuples_of_arrays(factory):
    _, params, _ = make(factory)
    assert hasattr(params, "_fields"), "params must be a NamedTuple with named fields"
    for leaf in jax.tree_util.tree_leaves(params):
        assert isinstance(leaf, jax.Array) and leaf.dtype == jnp.float32


@parametrize_cells
def test_shapes_of_step_and_unroll(factory, unroll):
    cell, params, xs = make(factory)
    carry = cell.initial_carry((2, 3))
    new_carry, y = cell.step(params, carry, jnp.ones((2, 3, INPUT_SIZE), jnp.float32))
    chex.assert_trees_all_equal_shapes(new_carry, carry)
    chex.assert_shape(y, (2, 3, cell.output_size))
    ys, final = unroll(cell, params, xs)
    chex.assert_shape(ys, (B, T, cell.output_size))
    chex.assert_trees_all_equal_shapes(final, cell.initial_carry((B,)))


@parametrize_cells
def test_initial_carry_is_zeros(factory):
    cell = factory()
    for leaf in jax.tree_util.tree_leaves(cell.initial_carry(3)):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))


@parametrize_cells
def test_unroll_equals_python_loop(factory, unroll):
    cell, params, xs = make(factory)
    carry0 = jax.tree_util.tree_map(
        lambda c: jax.random.normal(jax.random.key(9), c.shape, c.dtype), cell.initial_carry((B,))
    )
    for c in (None, carry0):
        ys, final = unroll(cell, params, xs, c)
        ref_ys, ref_final = python_loop(cell, params, xs, c)
        chex.assert_trees_all_close(ys, ref_ys, **TOL)
        chex.assert_trees_all_close(final, ref_final, **TOL)


@parametrize_cells
def test_time_major_and_unroll_factor_agree(factory, unroll):
    cell, params, xs = make(factory)
    ys, final = unroll(cell, params, xs)
    ys_tm, final_tm = unroll(cell, params, jnp.swapaxes(xs, 0, 1), time_major=True, unroll=3)
    chex.assert_trees_all_close(jnp.swapaxes(ys_tm, 0, 1), ys, **TOL)
    chex.assert_trees_all_close(final_tm, final, **TOL)


@parametrize_cells
def test_reverse_equals_unroll_of_flipped_input(factory, unroll):
    cell, params, xs = make(factory)
    ys, final = unroll(cell, params, xs, reverse=True)
    ref_ys, ref_final = python_loop(cell, params, xs[:, ::-1])
    chex.assert_trees_all_close(ys, ref_ys[:, ::-1], **TOL)
    chex.assert_trees_all_close(final, ref_final, **TOL)


@parametrize_cells
def test_hoisted_and_per_step_projection_agree(factory):
    cell, params, xs = make(factory)
    lengths = jnp.array([T, 1, 0, 3])

    def loss(p, x, method):
        return jnp.sum(
            jnp.sin(lj.unroll(cell, p, x, lengths=lengths, method=method, reverse=True)[0])
        )

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    results = [grad(params, xs, scan_method(layout)) for layout in sorted(PLACEMENTS)] + [
        lj.unroll(cell, params, xs, lengths=lengths, method=scan_method(layout), reverse=True)
        for layout in sorted(PLACEMENTS)
    ]
    chex.assert_trees_all_close(results[0], results[1], **TOL)  # gradients
    chex.assert_trees_all_close(results[2], results[3], **TOL)  # outputs and final carry


@parametrize_cells
def test_jit_equals_no_jit_and_does_not_retrace(factory, unroll):
    cell, params, xs = make(factory)

    traces = []

    @jax.jit
    def run(params, xs):
        traces.append(1)  # Python side effect: runs once per trace only
        return unroll(cell, params, xs)

    first = run(params, xs)
    second = run(params, xs + 1.0)  # same shapes: must not trace again
    assert len(traces) == 1
    chex.assert_trees_all_close(first, unroll(cell, params, xs), **TOL)
    chex.assert_trees_all_close(second, unroll(cell, params, xs + 1.0), **TOL)


@parametrize_cells
def test_vmap_over_sequences_equals_batched_unroll(factory, unroll):
    cell, params, xs = make(factory)
    one = jax.vmap(lambda x: unroll(cell, params, x[None]))(xs)
    ys, final = unroll(cell, params, xs)
    chex.assert_trees_all_close(one[0][:, 0], ys, **TOL)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda c: c[:, 0], one[1]), final, **TOL)


@parametrize_cells
def test_vmap_over_parameters(factory, unroll):
    cell, _, xs = make(factory)
    keys = jax.random.split(jax.random.key(3), 2)
    stacked = jax.vmap(lambda k: cell.init(k, INPUT_SIZE))(keys)
    ys = jax.vmap(lambda p: unroll(cell, p, xs)[0])(stacked)
    for i, k in enumerate(keys):
        chex.assert_trees_all_close(ys[i], unroll(cell, cell.init(k, INPUT_SIZE), xs)[0], **TOL)


@parametrize_cells
def test_grad_is_finite_and_matches_jitted_grad(factory, unroll):
    cell, params, xs = make(factory)

    def loss(p):
        ys, _ = unroll(cell, p, xs)
        return jnp.sum(ys[:, -1] ** 2)

    g = jax.grad(loss)(params)
    chex.assert_tree_all_finite(g)
    chex.assert_trees_all_close(g, jax.jit(jax.grad(loss))(params), **TOL)
    assert any(float(jnp.abs(leaf).sum()) > 0 for leaf in jax.tree_util.tree_leaves(g))


@parametrize_cells
def test_float64_parameters_and_inputs(factory, unroll):
    cell, params, xs = make(factory, dtype=jnp.float64)
    ys, final = unroll(cell, params, xs)
    assert ys.dtype == jnp.float64
    for leaf in jax.tree_util.tree_leaves(final):
        assert leaf.dtype == jnp.float64


@parametrize_cells
def test_empty_sequence_returns_initial_carry(factory, unroll):
    cell, params, xs = make(factory)
    ys, final = unroll(cell, params, xs[:, :0])
    chex.assert_shape(ys, (B, 0, cell.output_size))
    chex.assert_trees_all_equal(final, cell.initial_carry((B,)))


def test_lstm_forget_bias_and_gate_order():
    cell = lj.lstm(4, forget_bias=1.0)
    p = cell.init(jax.random.key(0), 2)
    np.testing.assert_array_equal(p.b, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    assert p.peephole is None
    assert lj.lstm(4, peephole=True).init(jax.random.key(0), 2).peephole.shape == (3, 4)


def test_recurrent_blocks_are_orthogonal():
    p = lj.lstm(6).init(jax.random.key(0), 3)
    for g in range(4):
        block = np.asarray(p.w_h[:, 6 * g : 6 * (g + 1)], np.float64)
        np.testing.assert_allclose(block.T @ block, np.eye(6), atol=1e-5)


def test_initialisers_are_overridable():
    ones = jax.nn.initializers.ones
    p = lj.gru(3, kernel_init=ones, recurrent_init=ones, bias_init=ones).init(jax.random.key(0), 2)
    for leaf in jax.tree_util.tree_leaves(p):
        np.testing.assert_array_equal(leaf, np.ones_like(leaf))

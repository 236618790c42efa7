"""Forward-mode differentiation (`jvp`, `jacfwd`, `hessian`) through every cell.

The reference is central finite differences in float64 (step 1e-6 on a
smooth loss, so the truncation error is ~1e-12 and the rounding error
~1e-10): independent of both autodiff modes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from tests.cell_zoo import CELL_FACTORIES, CELL_IDS, INPUT_SIZE

EPS = 1e-6


def setup(factory):
    cell = factory(jnp.float64)
    params = cell.init(jax.random.PRNGKey(0), INPUT_SIZE)
    # Non-zero biases everywhere, so no gate sits at its symmetric point.
    params = jax.tree_util.tree_map(
        lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(a.size), a.shape, a.dtype), params
    )
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 5, INPUT_SIZE), jnp.float64)
    return cell, params, xs


def loss(cell, params, xs):
    ys, _ = lj.unroll(cell, params, xs, lengths=jnp.array([5, 3]))
    return jnp.sum(jnp.sin(ys))


def direction(tree, seed):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    )


def shift(tree, v, s):
    return jax.tree_util.tree_map(lambda a, d: a + s * d, tree, v)


@pytest.mark.parametrize("factory", CELL_FACTORIES, ids=CELL_IDS)
def test_jvp_equals_finite_differences(factory):
    cell, params, xs = setup(factory)
    v, u = direction(params, 2), direction(xs, 3)
    f = jax.jit(lambda p, x: loss(cell, p, x))
    _, tangent = jax.jit(lambda p, x: jax.jvp(f, (p, x), (v, u)))(params, xs)
    fd = (
        f(shift(params, v, EPS), shift(xs, u, EPS)) - f(shift(params, v, -EPS), shift(xs, u, -EPS))
    ) / (2 * EPS)
    np.testing.assert_allclose(tangent, fd, rtol=1e-7, atol=1e-9)


CUSTOM = ["lstm", "lstm_peephole", "gru", "gru_reset_before"]  # the cells with a custom rule


@pytest.mark.parametrize("name", CUSTOM)
def test_hessian_vector_product_equals_finite_differences_of_the_gradient(name):
    """Forward over reverse (the hessian's usual form) through the custom rules."""
    cell, params, xs = setup(dict(zip(CELL_IDS, CELL_FACTORIES, strict=True))[name])
    v = direction(params, 4)
    grad = jax.jit(jax.grad(lambda p: loss(cell, p, xs)))
    _, hv = jax.jit(lambda p: jax.jvp(grad, (p,), (v,)))(params)
    plus, minus = grad(shift(params, v, EPS)), grad(shift(params, v, -EPS))
    for got, a, b in zip(
        jax.tree.leaves(hv), jax.tree.leaves(plus), jax.tree.leaves(minus), strict=True
    ):
        np.testing.assert_allclose(got, (a - b) / (2 * EPS), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["lstm_peephole", "gru_reset_before"])
def test_hessian_equals_finite_differences_of_the_gradient(name):
    """`jax.hessian` (forward over reverse) through the custom rules."""
    cell, params, xs = setup(dict(zip(CELL_IDS, CELL_FACTORIES, strict=True))[name])
    x0 = xs[0, 0]
    g = jax.jit(lambda x: loss(cell, params, xs.at[0, 0].set(x)))
    grad = jax.jit(jax.grad(g))
    fd = np.stack([(grad(x0 + EPS * e) - grad(x0 - EPS * e)) / (2 * EPS) for e in np.eye(3)])
    np.testing.assert_allclose(jax.jit(jax.hessian(g))(x0), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["min_gru", "min_lstm"])
def test_hessian_vector_product_through_the_chunked_exact_pass(name):
    """Forward over reverse through the affine scan's custom rule and the chunks' remat."""
    cell, params, xs = setup(dict(zip(CELL_IDS, CELL_FACTORIES, strict=True))[name])

    def chunked_loss(p):
        ys, _ = lj.unroll(cell, p, xs, lengths=jnp.array([5, 3]), method=lj.Affine(chunk=2))
        return jnp.sum(jnp.sin(ys))

    v = direction(params, 5)
    grad = jax.jit(jax.grad(chunked_loss))
    _, hv = jax.jit(lambda p: jax.jvp(grad, (p,), (v,)))(params)
    plus, minus = grad(shift(params, v, EPS)), grad(shift(params, v, -EPS))
    for got, a, b in zip(
        jax.tree.leaves(hv), jax.tree.leaves(plus), jax.tree.leaves(minus), strict=True
    ):
        np.testing.assert_allclose(got, (a - b) / (2 * EPS), rtol=1e-6, atol=1e-8)

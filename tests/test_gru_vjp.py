"""The hand-derived GRU backward pass equals autodiff of the core GRU step.

Reference: `jax.grad` through `lj.gru(...).recur` (plain autodiff), in
float64, to 1e-10; both reset placements, several batch shapes, and BPTT
over a scan.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax._gru_vjp import gru_recur

H, I = 4, 3


def make(reset_after: bool, seed: int = 0):
    cell = lj.gru(H, reset_after=reset_after, dtype=jnp.float64)
    params = cell.init(jax.random.PRNGKey(seed), I)
    # Non-zero biases, so that no gate sits at its symmetric point by chance.
    params = params._replace(b=jnp.linspace(-0.8, 0.9, 3 * H, dtype=jnp.float64))
    if reset_after:
        params = params._replace(b_hn=jnp.linspace(0.5, -0.4, H, dtype=jnp.float64))
    return cell, params


def vjp_recur(params, h, px):
    h = gru_recur(params.w_h, params.b_hn, h, px)
    return h, h


def assert_close(got, want, tol=1e-10):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_one_step_forward_and_gradients_equal_autodiff(reset_after, batch):
    cell, params = make(reset_after)
    kh, kp = jax.random.split(jax.random.PRNGKey(1))
    h = jax.random.normal(kh, batch + (H,), jnp.float64)
    px = jax.random.normal(kp, batch + (3 * H,), jnp.float64)

    def loss(recur, params, h, px):
        new, _ = recur(params, h, px)
        return jnp.sum(jnp.cos(3.0 * new)) + jnp.sum(new * h)

    assert_close(vjp_recur(params, h, px), cell.recur(params, h, px), 1e-14)
    got = jax.grad(lambda *a: loss(vjp_recur, *a), argnums=(0, 1, 2))(params, h, px)
    want = jax.grad(lambda *a: loss(cell.recur, *a), argnums=(0, 1, 2))(params, h, px)
    assert_close(got, want)


@pytest.mark.parametrize("reset_after", [True, False])
def test_bptt_through_a_scan_equals_autodiff(reset_after):
    cell, params = make(reset_after, seed=2)
    xs = jax.random.normal(jax.random.PRNGKey(3), (9, 2, I), jnp.float64)

    def loss(recur, params, xs):
        def body(h, x):
            return recur(params, h, cell.project(params, x))

        h, ys = jax.lax.scan(body, cell.initial_carry((2,)), xs)
        weights = jnp.linspace(-1, 1, ys.size).reshape(ys.shape)
        return jnp.sum(jnp.tanh(ys) * weights) + jnp.sum(h**2)

    both = jax.jit(
        lambda p, x: (
            jax.grad(lambda *a: loss(vjp_recur, *a), argnums=(0, 1))(p, x),
            jax.grad(lambda *a: loss(cell.recur, *a), argnums=(0, 1))(p, x),
        )
    )
    got, want = both(params, xs)
    assert_close(got, want)


def test_mixed_dtypes_give_cotangents_in_each_input_dtype():
    _, params = make(True)
    w_h = params.w_h.astype(jnp.float32)
    h = jnp.ones((2, H), jnp.float64)
    px = jnp.ones((2, 3 * H), jnp.float32)
    grads = jax.grad(lambda w, h, p: jnp.sum(gru_recur(w, params.b_hn, h, p)), argnums=(0, 1, 2))(
        w_h, h, px
    )
    assert [g.dtype for g in grads] == [jnp.float32, jnp.float64, jnp.float32]

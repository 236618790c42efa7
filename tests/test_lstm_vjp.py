"""The hand-derived LSTM backward pass equals autodiff of the core LSTM step.

Reference: `jax.grad` through `lj.lstm(...).recur` (plain autodiff), in
float64, to 1e-10; one step at several batch shapes, and BPTT over a scan.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax._lstm_vjp import lstm_recur

H, I = 4, 3


def make(peephole: bool, seed: int = 0):
    cell = lj.lstm(
        H, peephole=peephole, peephole_init=jax.nn.initializers.normal(0.7), dtype=jnp.float64
    )
    params = cell.init(jax.random.PRNGKey(seed), I)
    # A non-zero bias, so that no gate sits at its symmetric point by chance.
    params = params._replace(b=jnp.linspace(-0.8, 0.9, 4 * H, dtype=jnp.float64))
    return cell, params


def vjp_recur(params, carry, px):
    h, c = lstm_recur(params.w_h, params.peephole, carry.h, carry.c, px)
    return lj.LSTMCarry(h, c), h


def assert_close(got, want, tol=1e-10):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol)


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_one_step_forward_and_gradients_equal_autodiff(peephole, batch):
    cell, params = make(peephole)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    carry = lj.LSTMCarry(
        jax.random.normal(k1, batch + (H,), jnp.float64),
        jax.random.normal(k2, batch + (H,), jnp.float64),
    )
    px = jax.random.normal(k3, batch + (4 * H,), jnp.float64)

    def loss(recur, params, carry, px):
        new, _ = recur(params, carry, px)
        return jnp.sum(jnp.cos(3.0 * new.h)) + jnp.sum(jnp.sin(new.c) * new.h)

    assert_close(vjp_recur(params, carry, px), cell.recur(params, carry, px), 1e-14)
    got = jax.grad(lambda *a: loss(vjp_recur, *a), argnums=(0, 1, 2))(params, carry, px)
    want = jax.grad(lambda *a: loss(cell.recur, *a), argnums=(0, 1, 2))(params, carry, px)
    assert_close(got, want)


@pytest.mark.parametrize("peephole", [False, True])
def test_bptt_through_a_scan_equals_autodiff(peephole):
    cell, params = make(peephole, seed=2)
    xs = jax.random.normal(jax.random.PRNGKey(3), (9, 2, I), jnp.float64)

    def loss(recur, params, xs):
        def body(carry, x):
            return recur(params, carry, cell.project(params, x))

        carry, ys = jax.lax.scan(body, cell.initial_carry((2,)), xs)
        return jnp.sum(jnp.tanh(ys) * jnp.linspace(-1, 1, 4 * 9 * 2).reshape(ys.shape)) + jnp.sum(
            carry.c**2
        )

    both = jax.jit(
        lambda p, x: (
            jax.grad(lambda *a: loss(vjp_recur, *a), argnums=(0, 1))(p, x),
            jax.grad(lambda *a: loss(cell.recur, *a), argnums=(0, 1))(p, x),
        )
    )
    got, want = both(params, xs)
    assert_close(got, want)


def test_mixed_dtypes_give_cotangents_in_each_input_dtype():
    _, params = make(False)
    w_h = params.w_h.astype(jnp.float32)
    h = jnp.ones((2, H), jnp.float64)
    px = jnp.ones((2, 4 * H), jnp.float32)
    grads = jax.grad(lambda w, h, p: jnp.sum(lstm_recur(w, None, h, h, p)[0]), argnums=(0, 1, 2))(
        w_h, h, px
    )
    assert [g.dtype for g in grads] == [jnp.float32, jnp.float64, jnp.float32]


def test_forward_mode_is_refused_reverse_mode_works():
    """A custom VJP has no forward mode: jacrev works, jacfwd raises."""
    cell, params = make(False)
    carry, px = cell.initial_carry((2,)), jnp.ones((2, 4 * H))

    def f(px):
        return vjp_recur(params, carry, px)[1]

    jac = jax.jacrev(f)(px)
    want = jax.jacrev(lambda px: cell.recur(params, carry, px)[1])(px)
    assert_close(jac, want)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jacfwd(f)(px)

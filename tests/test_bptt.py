"""BPTT proved three ways, in float64.

1. autodiff through `lstmjax.unroll` (what users get from `jax.grad`);
2. the hand-derived backward pass of `bptt_reference` (NumPy, no JAX);
3. central finite differences of the loss along random directions.
(1) must equal (2) to 1e-8 relative, and both must match (3).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bptt_reference import gru_bptt, lstm_bptt, rnn_bptt

import lstmjax as lj

B, T, I, H = 3, 9, 4, 5
HAND_RTOL = 1e-8
FD_EPS = 1e-6
FD_RTOL = 1e-6  # central differences: error ~ eps^2 * f''' plus round-off ~ 1e-16 / eps

CASES = {
    "rnn": (lambda: lj.rnn(H, dtype=jnp.float64), rnn_bptt),
    "lstm": (lambda: lj.lstm(H, dtype=jnp.float64), lstm_bptt),
    "lstm_peephole": (
        lambda: lj.lstm(H, peephole=True, dtype=jnp.float64),
        lambda p, xs, w: lstm_bptt(p, xs, w, peephole=True),
    ),
    "gru": (lambda: lj.gru(H, dtype=jnp.float64), gru_bptt),
    "gru_reset_before": (
        lambda: lj.gru(H, reset_after=False, dtype=jnp.float64),
        lambda p, xs, w: gru_bptt(p, xs, w, reset_after=False),
    ),
}


def setup(name):
    factory, reference = CASES[name]
    cell = factory()
    params = cell.init(jax.random.key(0), I)
    # Random (not default) biases and peepholes so that every term is exercised.
    params = jax.tree_util.tree_map(
        lambda v: v + 0.3 * jax.random.normal(jax.random.key(v.size), v.shape, v.dtype), params
    )
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    w = jax.random.normal(jax.random.key(2), (B, T, H), jnp.float64)
    return cell, params, xs, w, reference


def loss(cell, params, xs, w, carry=None):
    ys, _ = lj.unroll(cell, params, xs, carry)
    return jnp.sum(w * ys)


@pytest.mark.parametrize("name", list(CASES))
def test_autodiff_equals_hand_derived_bptt(name):
    cell, params, xs, w, reference = setup(name)
    g_params, g_xs = jax.grad(lambda p, x: loss(cell, p, x, w), argnums=(0, 1))(params, xs)
    numpy_params = {k: (None if v is None else np.asarray(v)) for k, v in params._asdict().items()}
    hand = reference(numpy_params, np.asarray(xs), np.asarray(w))
    for field, value in g_params._asdict().items():
        if value is None:
            continue
        np.testing.assert_allclose(value, hand[field], rtol=HAND_RTOL, atol=1e-12, err_msg=field)
    np.testing.assert_allclose(g_xs, hand["x"], rtol=HAND_RTOL, atol=1e-12)

    carry0 = cell.initial_carry((B,))
    g_carry = jax.grad(lambda c: loss(cell, params, xs, w, c))(carry0)
    g_h0 = g_carry.h if name.startswith("lstm") else g_carry
    np.testing.assert_allclose(g_h0, hand["h0"], rtol=HAND_RTOL, atol=1e-12)
    if name.startswith("lstm"):
        np.testing.assert_allclose(g_carry.c, hand["c0"], rtol=HAND_RTOL, atol=1e-12)


@pytest.mark.parametrize("name", [*CASES, "jordan"])
def test_autodiff_equals_finite_differences(name):
    if name == "jordan":
        cell = lj.jordan(H, 3, dtype=jnp.float64)
        params = cell.init(jax.random.key(0), I)
        xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
        w = jax.random.normal(jax.random.key(2), (B, T, 3), jnp.float64)
    else:
        cell, params, xs, w, _ = setup(name)
    f = jax.jit(lambda p: loss(cell, p, xs, w))
    grads = jax.grad(lambda p: loss(cell, p, xs, w))(params)
    for seed in range(3):
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.key(100 + seed), len(leaves))
        direction = treedef.unflatten(
            [jax.random.normal(k, v.shape, v.dtype) for k, v in zip(keys, leaves, strict=True)]
        )
        plus = jax.tree_util.tree_map(lambda p, d: p + FD_EPS * d, params, direction)
        minus = jax.tree_util.tree_map(lambda p, d: p - FD_EPS * d, params, direction)
        fd = (f(plus) - f(minus)) / (2 * FD_EPS)
        analytic = sum(
            jnp.vdot(g, d)
            for g, d in zip(
                jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction), strict=True
            )
        )
        np.testing.assert_allclose(analytic, fd, rtol=FD_RTOL)

"""The hand-derived LSTM and GRU backward passes equal autodiff of the same step.

`lj.lstm` and `lj.gru` differentiate their recurrent step with a hand-written
derivative rule (`lstmjax/_lstm_rule.py`, `_gru_rule.py`). The reference here is `jax.grad`
of the very same forward equations (`_forward`, which carries no custom
VJP), in float64, to 1e-10: one step at several batch shapes (none, one,
two batch axes), and BPTT through a scan. Every variant is covered:
LSTM with and without peepholes, GRU with the reset gate after and before
the recurrent matmul. (tests/test_bptt.py checks the same cells against a
backward pass written in NumPy and against finite differences.)
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax import _gru_rule, _lstm_rule

H, I = 4, 3


class Kind(NamedTuple):
    cell: Callable[[], lj.Cell]
    autodiff_recur: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]
    biases: Callable[[Any], Any]  # non-zero biases, so no gate sits at its symmetric point


def lstm_autodiff(params, carry, px):
    (h, c), _ = _lstm_rule._forward(params.w_h, params.peephole, carry.h, carry.c, px)
    return lj.LSTMCarry(h, c), h


def gru_autodiff(params, h, px):
    h, _ = _gru_rule._forward(params.w_h, params.b_hn, h, px)
    return h, h


def lstm_biases(params):
    return params._replace(b=jnp.linspace(-0.8, 0.9, 4 * H, dtype=jnp.float64))


def gru_biases(params):
    params = params._replace(b=jnp.linspace(-0.8, 0.9, 3 * H, dtype=jnp.float64))
    if params.b_hn is None:
        return params
    return params._replace(b_hn=jnp.linspace(0.5, -0.4, H, dtype=jnp.float64))


PEEPHOLE = jax.nn.initializers.normal(0.7)
KINDS = {
    "lstm": Kind(lambda: lj.lstm(H, dtype=jnp.float64), lstm_autodiff, lstm_biases),
    "lstm_peephole": Kind(
        lambda: lj.lstm(H, peephole=True, peephole_init=PEEPHOLE, dtype=jnp.float64),
        lstm_autodiff,
        lstm_biases,
    ),
    "gru": Kind(lambda: lj.gru(H, dtype=jnp.float64), gru_autodiff, gru_biases),
    "gru_reset_before": Kind(
        lambda: lj.gru(H, reset_after=False, dtype=jnp.float64), gru_autodiff, gru_biases
    ),
}


def make(name: str, seed: int = 0):
    kind = KINDS[name]
    cell = kind.cell()
    return cell, kind.biases(cell.init(jax.random.PRNGKey(seed), I)), kind.autodiff_recur


def random_carry(cell: lj.Cell, batch: tuple, key) -> Any:
    like = cell.initial_carry(batch)
    leaves, tree = jax.tree_util.tree_flatten(like)
    keys = jax.random.split(key, len(leaves))
    return tree.unflatten(
        [
            jax.random.normal(k, leaf.shape, jnp.float64)
            for k, leaf in zip(keys, leaves, strict=True)
        ]
    )


def scalar(tree) -> jax.Array:
    """A loss that weighs every leaf differently and non-linearly."""
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(jnp.sum(jnp.cos(3.0 * a) * (1.0 + i)) for i, a in enumerate(leaves))


def assert_close(got, want, tol=1e-10):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol)


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("name", sorted(KINDS))
def test_one_step_forward_and_gradients_equal_autodiff(name, batch):
    cell, params, reference = make(name)
    kc, kp = jax.random.split(jax.random.PRNGKey(1))
    carry = random_carry(cell, batch, kc)
    px = jax.random.normal(kp, batch + (params.w_h.shape[1],), jnp.float64)

    assert_close(cell.recur(params, carry, px), reference(params, carry, px), 1e-14)
    grad = jax.grad(lambda f, *a: scalar(f(*a)), argnums=(1, 2, 3))
    assert_close(grad(cell.recur, params, carry, px), grad(reference, params, carry, px))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_bptt_through_a_scan_equals_autodiff(name):
    cell, params, reference = make(name, seed=2)
    xs = jax.random.normal(jax.random.PRNGKey(3), (9, 2, I), jnp.float64)

    def loss(recur, params, xs):
        def body(carry, x):
            return recur(params, carry, cell.project(params, x))

        carry, ys = jax.lax.scan(body, cell.initial_carry((2,)), xs)
        weights = jnp.linspace(-1, 1, ys.size).reshape(ys.shape)
        return jnp.sum(jnp.tanh(ys) * weights) + scalar(carry)

    both = jax.jit(
        lambda p, x: (
            jax.grad(lambda *a: loss(cell.recur, *a), argnums=(0, 1))(p, x),
            jax.grad(lambda *a: loss(reference, *a), argnums=(0, 1))(p, x),
        )
    )
    got, want = both(params, xs)
    assert_close(got, want)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_the_reference_is_not_the_custom_rule(name):
    """Guard: the cells' recur goes through the hand-written rule, the reference does not."""
    cell, params, reference = make(name)
    carry = cell.initial_carry((2,))
    px = jnp.ones((2, params.w_h.shape[1]), jnp.float64)
    assert "custom_jvp_call" in str(jax.make_jaxpr(lambda p: cell.recur(params, carry, p))(px))
    assert "custom_jvp_call" not in str(jax.make_jaxpr(lambda p: reference(params, carry, p))(px))


def test_reverse_mode_jacobian_equals_autodiff():
    cell, params, reference = make("lstm_peephole")
    carry, px = random_carry(cell, (2,), jax.random.PRNGKey(4)), jnp.ones((2, 4 * H))
    assert_close(
        jax.jacrev(lambda p: cell.recur(params, carry, p)[1])(px),
        jax.jacrev(lambda p: reference(params, carry, p)[1])(px),
    )


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_mixed_dtypes_give_cotangents_in_each_input_dtype(name):
    _, params, _ = make(name)
    G = params.w_h.shape[1]
    w_h = params.w_h.astype(jnp.float32)
    h = jnp.ones((2, H), jnp.float64)
    px = jnp.ones((2, G), jnp.float32)
    if name == "lstm":

        def f(w, h, p):
            return jnp.sum(_lstm_rule.lstm_recur(w, None, h, h, p)[0])
    else:

        def f(w, h, p):
            return jnp.sum(_gru_rule.gru_recur(w, params.b_hn, h, p))

    grads = jax.grad(f, argnums=(0, 1, 2))(w_h, h, px)
    assert [g.dtype for g in grads] == [jnp.float32, jnp.float64, jnp.float32]

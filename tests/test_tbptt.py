"""Truncated BPTT: per-chunk gradients, the carry handed on, and the update loop.

References are computed independently: each chunk's initial carry comes from
running the prefix of the stream with `lj.unroll` / `net.apply` and is then
turned into a NumPy constant, so no gradient can flow into it, and the
gradient is `jax.grad` of that chunk's loss alone. Everything is float64,
compared at rtol 1e-10.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lstmjax as lj
from lstmjax import tbptt, train

B, T, K, FEATURES, HIDDEN = 2, 12, 4, 3, 5
F64 = jnp.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}


class Model(NamedTuple):
    rnn: Any
    head: lj.DenseParams


def mse(pred, target):
    return jnp.mean((pred - target) ** 2)


def single_cell(cell):
    """A bare cell on `lj.unroll` with a dense readout at every step."""
    head = lj.dense(1, dtype=F64)

    def init(key):
        k1, k2 = jax.random.split(key)
        return Model(cell.init(k1, FEATURES), head.init(k2, cell.output_size))

    def apply(params, xs, carry):
        hs, carry = lj.unroll(cell, params.rnn, xs, carry)
        return head.apply(params.head, hs), carry

    carry0 = jax.tree_util.tree_map(
        lambda s: jax.random.normal(jax.random.key(3), s.shape, F64),
        jax.eval_shape(lambda: cell.initial_carry((B,))),
    )
    return init, apply, carry0


def stacked(cell, layers: int = 2):
    """A stacked `lj.recurrent` net (PyTorch carry layout) with a dense readout."""
    net, head = lj.recurrent(cell, layers), lj.dense(1, dtype=F64)

    def init(key):
        k1, k2 = jax.random.split(key)
        return Model(net.init(k1, FEATURES), head.init(k2, cell.output_size))

    def apply(params, xs, carry):
        o, carry = net.apply(params.rnn, xs, carry)
        return head.apply(params.head, o), carry

    carry0 = jax.tree_util.tree_map(lambda c: c.astype(F64) + 0.1, net.initial_carry(B))
    return init, apply, carry0


MODELS = {
    "rnn": lambda: single_cell(lj.rnn(HIDDEN, dtype=F64)),
    "gru": lambda: single_cell(lj.gru(HIDDEN, dtype=F64)),
    "lstm": lambda: single_cell(lj.lstm(HIDDEN, dtype=F64)),
    "jordan": lambda: single_cell(lj.jordan(HIDDEN, 2, dtype=F64)),
    "stacked_lstm": lambda: stacked(lj.lstm(HIDDEN, dtype=F64)),
}


def stream(seed: int = 1):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (B, T, FEATURES), F64), jax.random.normal(ky, (B, T, 1), F64)


def constant(tree):
    """A concrete NumPy copy: a constant for `jax.grad`, so no gradient flows into it."""
    return jax.tree_util.tree_map(np.asarray, tree)


def assert_close(a, b) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


def reference_fns(apply):
    """Jitted `apply` and `(params, xs, ys, carry) -> (loss, grad wrt params only)`."""

    def chunk_loss(params, xs, ys, carry):
        return mse(apply(params, xs, carry)[0], ys)

    return jax.jit(apply), jax.jit(jax.value_and_grad(chunk_loss))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_chunk_gradients_and_carry_match_independent_references(name):
    init, apply, carry0 = MODELS[name]()
    params = init(jax.random.key(0))
    xs, ys = stream()
    losses, grads, carry = jax.jit(lambda p, c: tbptt.tbptt_grads(apply, mse, p, (xs, ys), K, c))(
        params, carry0
    )
    assert losses.shape == (T // K,)
    run, loss_and_grad = reference_fns(apply)
    for j in range(T // K):
        # The carry entering chunk j: the whole prefix in one pass, as a constant.
        start = constant(run(params, xs[:, : j * K], carry0)[1]) if j else carry0
        chunk = (xs[:, j * K : (j + 1) * K], ys[:, j * K : (j + 1) * K])
        ref_loss, ref_grad = loss_and_grad(params, *chunk, start)
        np.testing.assert_allclose(losses[j], ref_loss, **TOL)
        assert_close(jax.tree_util.tree_map(lambda g, j=j: g[j], grads), ref_grad)
    # The carry handed on equals one continuous pass over the whole stream.
    assert_close(carry, run(params, xs, carry0)[1])


def test_truncation_really_cuts_the_gradient():
    # Full BPTT through the prefix gives a different gradient for chunk 2.
    init, apply, carry0 = MODELS["lstm"]()
    params = init(jax.random.key(0))
    xs, ys = stream()
    _, grads, _ = tbptt.tbptt_grads(apply, mse, params, (xs, ys), K, carry0)

    def full(p):
        preds, _ = apply(p, xs[:, : 3 * K], carry0)
        return mse(preds[:, 2 * K :], ys[:, 2 * K : 3 * K])

    g_full = jax.jit(jax.grad(full))(params)
    diff = np.max(np.abs(np.asarray(g_full.rnn.w_h) - np.asarray(grads.rnn.w_h[2])))
    assert diff > 1e-6


@pytest.mark.parametrize(("name", "clip"), [("lstm", None), ("stacked_lstm", 0.05)])
def test_update_loop_matches_a_hand_written_one(name, clip):
    init, apply, carry0 = MODELS[name]()
    lr = 0.3
    sgd = optax.sgd(lr)
    if clip is not None:
        sgd = optax.chain(optax.clip_by_global_norm(clip), sgd)
    params = init(jax.random.key(0))
    xs, ys = stream()
    step = tbptt.chunked(train.make_train_step(apply, mse, sgd), K)
    state = train.init_state(params, sgd, key=jax.random.key(0), carry=carry0)
    state, metrics = step(state, (xs, ys))
    carry = state.carry

    # Reference: plain Python, one chunk at a time, SGD and clipping by hand.
    run, loss_and_grad = reference_fns(apply)
    p, c, ref_losses, clipped_any = params, carry0, [], False
    for j in range(T // K):
        cx, cy = xs[:, j * K : (j + 1) * K], ys[:, j * K : (j + 1) * K]
        start = constant(c)
        loss, g = loss_and_grad(p, cx, cy, start)
        norm = np.sqrt(sum(np.sum(np.asarray(x) ** 2) for x in jax.tree_util.tree_leaves(g)))
        scale = 1.0 if clip is None else min(1.0, clip / norm)
        clipped_any |= scale < 1.0
        c = run(p, cx, start)[1]  # forward with the parameters before this update
        p = jax.tree_util.tree_map(lambda q, d, scale=scale: q - lr * scale * d, p, g)
        ref_losses.append(loss)
        np.testing.assert_allclose(metrics["grad_norm"][j], norm, **TOL)
    assert clip is None or clipped_any
    np.testing.assert_allclose(metrics["loss"], np.array(ref_losses), **TOL)
    assert_close(state.params, p)
    assert_close(carry, c)
    assert int(state.step) == T // K and bool(np.all(metrics["finite"]))


def test_each_chunk_gets_a_fresh_key_split_from_the_state():
    # apply_fn adds one uniform draw from its key: each chunk's loss reveals the key.
    def apply(params, xs, carry, key):
        noise = jax.random.uniform(key, (), F64)
        return params * jnp.ones(xs.shape[:2] + (1,), F64) + noise, carry + 1.0

    sgd = optax.sgd(0.0)
    step = tbptt.chunked(train.make_train_step(apply, mse, sgd, with_key=True), K)
    state = train.init_state(jnp.zeros((), F64), sgd, key=jax.random.key(4),
                             carry=jnp.zeros((B, 1), F64))  # fmt: skip
    xs, ys = jnp.zeros((B, T, 1), F64), jnp.zeros((B, T, 1), F64)
    rng, expected = state.rng, []
    for _ in range(T // K):
        rng, key = jax.random.split(rng)
        expected.append(float(jax.random.uniform(key, (), F64)) ** 2)
    state, metrics = step(state, (xs, ys))
    carry = state.carry
    np.testing.assert_allclose(metrics["loss"], expected, **TOL)
    assert len(set(expected)) == T // K
    np.testing.assert_array_equal(carry, np.full((B, 1), T // K))
    assert np.array_equal(jax.random.key_data(state.rng), jax.random.key_data(rng))


def test_stream_length_must_be_a_multiple_of_the_chunk():
    init, apply, carry0 = MODELS["lstm"]()
    xs, ys = stream()
    with pytest.raises(ValueError, match=r"T=12 steps .* not a multiple of chunk_len=5"):
        tbptt.tbptt_grads(apply, mse, init(jax.random.key(0)), (xs, ys), 5, carry0)
    with pytest.raises(ValueError, match="chunk_len must be an int >= 1; got 0"):
        tbptt.split_chunks(xs, 0)
    step = train.make_train_step(apply, mse, optax.sgd(0.1))
    with pytest.raises(ValueError, match=r"tbptt\.chunked needs the carry in the state"):
        tbptt.chunked(step, K)(train.init_state(init(jax.random.key(0)), optax.sgd(0.1)), (xs, ys))

"""Stacked and bidirectional layers, and the feed-forward pieces."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_zoo import CELL_FACTORIES, CELL_IDS, INPUT_SIZE

import lstmjax as lj

B, T = 3, 6
TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("factory", CELL_FACTORIES, ids=CELL_IDS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_recurrent_equals_manual_composition(factory, num_layers, bidirectional):
    cell = factory(jnp.float64)
    net = lj.recurrent(cell, num_layers=num_layers, bidirectional=bidirectional)
    params = net.init(jax.random.key(0), INPUT_SIZE)
    xs = jax.random.normal(jax.random.key(1), (B, T, INPUT_SIZE), jnp.float64)
    o, carry = net.apply(params, xs)

    h, finals = xs, []
    for layer in params:
        fwd, c_f = lj.unroll(cell, layer.forward, h)
        finals.append(c_f)
        if bidirectional:
            bwd, c_b = lj.unroll(cell, layer.backward, h, reverse=True)
            finals.append(c_b)
            h = jnp.concatenate([fwd, bwd], axis=-1)
        else:
            h = fwd
    directions = 2 if bidirectional else 1
    chex.assert_shape(o, (B, T, directions * cell.output_size))
    chex.assert_trees_all_close(o, h, **TOL)
    for k, c in enumerate(finals):
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda leaf, k=k: leaf[k], carry), c, **TOL
        )


def test_lstm_carry_unpacks_like_pytorch():
    net = lj.recurrent(lj.lstm(4), num_layers=3, bidirectional=True)
    params = net.init(jax.random.key(0), 2)
    o, (h, c) = net.apply(params, jnp.ones((5, 7, 2)))
    assert o.shape == (5, 7, 8) and h.shape == (6, 5, 4) and c.shape == (6, 5, 4)
    # The carry goes back in: starting from the returned state continues the sequence.
    o2, _ = net.apply(params, jnp.ones((5, 1, 2)), (h, c))
    assert o2.shape == (5, 1, 8)


def test_initial_carry_is_used_per_layer():
    net = lj.recurrent(lj.rnn(4, dtype=jnp.float64), num_layers=2)
    params = net.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (B, T, 2), jnp.float64)
    h0 = jax.random.normal(jax.random.key(2), (2, B, 4), jnp.float64)
    o, h_n = net.apply(params, xs, h0)
    y1, c1 = lj.unroll(net.cell, params[0].forward, xs, h0[0])
    y2, c2 = lj.unroll(net.cell, params[1].forward, y1, h0[1])
    chex.assert_trees_all_close((o, h_n), (y2, jnp.stack([c1, c2])), **TOL)


def test_dropout_only_with_a_key_and_between_layers():
    net = lj.recurrent(lj.gru(8), num_layers=2, dropout=0.5)
    params = net.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (B, T, 3), jnp.float32)
    plain = net.apply(params, xs, deterministic=True)[0]
    undropped = lj.recurrent(lj.gru(8), num_layers=2)
    np.testing.assert_array_equal(plain, undropped.apply(params, xs)[0])
    dropped = net.apply(params, xs, key=jax.random.key(5))[0]
    assert not np.allclose(plain, dropped)
    again = net.apply(params, xs, key=jax.random.key(5))[0]
    np.testing.assert_array_equal(dropped, again)  # seeded: reproducible


def test_dense_mlp_embedding_readout():
    x = jax.random.normal(jax.random.key(0), (4, 3), jnp.float64)
    d = lj.dense(2, dtype=jnp.float64)
    p = d.init(jax.random.key(1), 3)
    p_np = jax.tree_util.tree_map(np.asarray, p)
    np.testing.assert_allclose(d.apply(p, x), np.asarray(x) @ p_np.w + p_np.b, **TOL)

    m = lj.mlp([5, 2], activation=jnp.tanh, dtype=jnp.float64)
    pm = m.init(jax.random.key(2), 3)
    (a, b) = jax.tree_util.tree_map(np.asarray, pm.layers)
    np.testing.assert_allclose(
        m.apply(pm, x), np.tanh(np.asarray(x) @ a.w + a.b) @ b.w + b.b, **TOL
    )

    e = lj.embedding(10, 4)
    pe = e.init(jax.random.key(3))
    ids = jnp.array([[1, 9], [0, 1]])
    np.testing.assert_array_equal(e.apply(pe, ids), np.asarray(pe.table)[np.asarray(ids)])

    r = lj.softmax_readout(6, dtype=jnp.float64)
    pr = r.init(jax.random.key(4), 3)
    logp = r.apply(pr, x)
    logits = np.asarray(x) @ np.asarray(pr.w) + np.asarray(pr.b)
    ref = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(logp, ref, **TOL)


def test_last_valid_picks_each_sequence_end():
    ys = jnp.arange(2 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 1)
    np.testing.assert_array_equal(lj.last_valid(ys), [[3.0], [7.0]])
    np.testing.assert_array_equal(lj.last_valid(ys, jnp.array([2, 0])), [[1.0], [0.0]])

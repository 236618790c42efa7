"""Dropout inside the recurrence: `lj.recurrent_dropout` and `recurrent(..., key=)`.

References are independent: a Python loop that applies each paper's rule by
hand to the plain cell's `step` with the drawn masks, Monte Carlo means,
finite differences. Claims and tolerances:
  * the variational masks are constant over time, independent across
    sequences, with the requested drop rate (within 4 standard errors);
  * unroll of the wrapped cell equals the hand loop (Gal & Ghahramani's
    h_{t-1} * m fed to the step; Krueger's zoneout select; added noise)
    within 1e-6 (float32), with lengths and reverse too;
  * expectations: for a linear RNN the mean over 4,000 sequences of the
    dropped-out outputs equals the deterministic pass (within 4 standard
    errors); the mean zoneout step equals the evaluation-mode (expected) step;
  * without a key, `recurrent` with dropout options is exactly the plain
    net (bit for bit), and zoneout is its expected update;
  * float64 gradients with a fixed key equal central finite differences;
  * lengths: past its length a sequence's carry stops and its outputs are
    zero, NaN in the padding reaches no output or gradient;
  * jit, bfloat16, stacking and bidirectional nets run with every option.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from finite_differences import assert_grad_matches_fd

import lstmjax as lj

B, T, I = 4, 6, 3
OPTIONS = dict(input_dropout=0.3, recurrent_dropout=0.4, zoneout=0.25, state_noise=0.05)


def setup(cell, dtype=jnp.float32, batch=B):
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (batch, T, I), dtype)
    return params, xs


def channels(cell, params, xs, key, **options):
    """The masks `recurrent_dropout` drew, split back apart (test-side bookkeeping)."""
    _, _, wxs = lj.recurrent_dropout(cell, params, xs, key=key, **options)
    return wxs[..., :I], wxs[..., I:]


def test_variational_masks_constant_over_time_and_independent_across_sequences():
    cell = lj.lstm(5)
    params, _ = setup(cell)
    xs = jnp.ones((2000, T, I), jnp.float32)
    rate = 0.3
    x_in, rec = channels(
        cell, params, xs, jax.random.key(2), input_dropout=rate, recurrent_dropout=rate
    )
    for m in (np.asarray(x_in), np.asarray(rec)):
        np.testing.assert_array_equal(m, np.broadcast_to(m[:, :1], m.shape))  # constant in t
        assert set(np.unique(m)) == {0.0, m.dtype.type(1 / (1 - rate))}
        dropped = (m[:, 0] == 0).mean()
        assert abs(dropped - rate) < 4 * np.sqrt(rate * (1 - rate) / m[:, 0].size)
        # Independent across sequences: neighbouring sequences agree as often as chance.
        agree = (m[1:, 0] == m[:-1, 0]).mean()
        p_agree = rate**2 + (1 - rate) ** 2
        assert abs(agree - p_agree) < 4 * np.sqrt(p_agree * (1 - p_agree) / m[1:, 0].size)


def hand_loop(cell, params, xs, x_in, rec_mask, zone, noise):
    """Each paper's rule applied by hand around the plain cell's step."""
    carry = cell.initial_carry((xs.shape[0],))
    ys = []
    for t in range(xs.shape[1]):
        read = carry
        if rec_mask is not None:
            read = carry._replace(h=carry.h * rec_mask[:, t])
        new, _ = cell.step(params, read, x_in[:, t])
        if zone is not None:
            H = cell.hidden_size
            new = lj.LSTMCarry(
                h=jnp.where(zone[:, t, :H] > 0, carry.h, new.h),
                c=jnp.where(zone[:, t, H:] > 0, carry.c, new.c),
            )
        if noise is not None:
            H = cell.hidden_size
            new = lj.LSTMCarry(h=new.h + noise[:, t, :H], c=new.c + noise[:, t, H:])
        carry = new
        ys.append(carry.h)
    return jnp.stack(ys, 1), carry


def test_unroll_equals_hand_loop():
    cell = lj.lstm(5)
    params, xs = setup(cell)
    key = jax.random.key(3)
    x_in, rest = channels(cell, params, xs, key, **OPTIONS)
    H = cell.hidden_size
    rec, zone, noise = rest[..., :H], rest[..., H : 3 * H], rest[..., 3 * H :]
    loop = jax.jit(lambda *a: hand_loop(cell, *a))  # one compilation, not op-by-op
    want_ys, want_carry = loop(params, xs, x_in, rec, zone, noise)
    ys, carry = jax.jit(
        lambda p, x: lj.unroll(*lj.recurrent_dropout(cell, p, x, key=key, **OPTIONS))
    )(params, xs)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(carry.c, want_carry.c, rtol=1e-6, atol=1e-6)
    # Zoneout did act: without its masks the hand loop gives other outputs.
    no_zone, _ = jax.jit(lambda *a: hand_loop(cell, *a, None, noise))(params, xs, x_in, rec)
    assert np.abs(np.asarray(no_zone - want_ys)).max() > 1e-2


def test_expected_values_match_deterministic_pass():
    """Linear RNN: E[outputs] over the masks is the deterministic output.

    Each output is linear in the input mask, so with input dropout this holds
    at every step; the recurrent mask is the same at every step, so h_t is a
    polynomial of degree t - 1 in it, and E[m^2] != 1: with recurrent dropout
    it holds for the first two steps only (where h_{t-1} meets the mask once).
    """
    cell = lj.rnn(5, activation="identity")
    n = 4000
    params, _ = setup(cell)
    xs = jnp.broadcast_to(jax.random.normal(jax.random.key(4), (1, T, I)), (n, T, I))
    det, _ = lj.unroll(cell, params, xs[:1])
    for options, steps in ((dict(input_dropout=0.3), T), (dict(recurrent_dropout=0.3), 2)):
        ys, _ = lj.unroll(*lj.recurrent_dropout(cell, params, xs, key=jax.random.key(5), **options))
        mean, se = ys[:, :steps].mean(0), ys[:, :steps].std(0) / np.sqrt(n)
        assert np.all(np.abs(mean - det[0, :steps]) < 4.5 * se + 1e-6), options


def test_zoneout_mean_step_is_the_expected_update():
    cell = lj.gru(5)
    n, rate = 4000, 0.4
    params, _ = setup(cell)
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(6), (1, 1, I)), (n, 1, I))
    h0 = jnp.broadcast_to(jax.random.normal(jax.random.key(7), (1, 5)), (n, 5))
    ys, _ = lj.unroll(
        *lj.recurrent_dropout(cell, params, x, key=jax.random.key(8), zoneout=rate), h0
    )
    expected, _ = lj.unroll(
        *lj.recurrent_dropout(cell, params, x[:1], zoneout=rate, deterministic=True), h0[:1]
    )
    new, _ = cell.step(params, h0[:1], x[0, :1])
    np.testing.assert_allclose(expected[0, 0], rate * h0[0] + (1 - rate) * new[0], rtol=1e-6)
    se = np.asarray(ys[:, 0]).std(0) / np.sqrt(n)
    assert np.all(np.abs(ys[:, 0].mean(0) - expected[0, 0]) < 4.5 * se + 1e-6)


def test_deterministic_recurrent_is_the_plain_pass():
    cell = lj.lstm(5)
    params = lj.recurrent(cell, 2, True).init(jax.random.key(0), I)
    _, xs = setup(cell)
    plain = lj.recurrent(cell, 2, True)
    dropped = lj.recurrent(cell, 2, True, input_dropout=0.5, recurrent_dropout=0.5, state_noise=1.0)
    for a, b in zip(
        jax.tree_util.tree_leaves(dropped.apply(params, xs, deterministic=True)),
        jax.tree_util.tree_leaves(plain.apply(params, xs)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    # With a key the options act, and the same key gives the same draw.
    o1, _ = dropped.apply(params, xs, key=jax.random.key(1))
    np.testing.assert_array_equal(o1, dropped.apply(params, xs, key=jax.random.key(1))[0])
    assert np.abs(o1 - plain.apply(params, xs)[0]).max() > 0.1


def test_gradients_match_finite_differences_with_fixed_key():
    cell = lj.lstm(4, dtype=jnp.float64)
    params, xs = setup(cell, jnp.float64)
    key = jax.random.key(9)
    w = jax.random.normal(jax.random.key(2), (B, T, 4), jnp.float64)

    def loss(args):
        p, x = args
        ys, carry = lj.unroll(*lj.recurrent_dropout(cell, p, x, key=key, **OPTIONS))
        return jnp.sum(w * ys) + jnp.sum(carry.c**2)

    assert_grad_matches_fd(loss, (params, xs))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_lengths_respected(reverse):
    cell = lj.gru(5)  # carry = output, so the final carry is visible in ys
    params, xs = setup(cell)
    lengths = jnp.array([T, 3, 0, 5])
    padding = jnp.arange(T)[None, :, None] >= lengths[:, None, None]
    junk = jnp.where(padding, jnp.nan, xs)
    key = jax.random.key(10)
    opts = dict(input_dropout=0.3, recurrent_dropout=0.3, zoneout=0.3, state_noise=0.1)

    def run(x):
        return lj.unroll(
            *lj.recurrent_dropout(cell, params, x, key=key, **opts),
            lengths=lengths,
            reverse=reverse,
        )

    ys, h = run(junk)
    ys_clean, h_clean = run(xs)
    np.testing.assert_array_equal(ys, ys_clean)
    np.testing.assert_array_equal(h, h_clean)
    assert not np.asarray(ys)[np.broadcast_to(np.asarray(padding), ys.shape)].any()
    last = ys[:, 0] if reverse else ys[jnp.arange(B), jnp.maximum(lengths - 1, 0)]
    np.testing.assert_array_equal(h[lengths > 0], last[lengths > 0])
    np.testing.assert_array_equal(h[2], jnp.zeros(5))
    g = jax.grad(
        lambda p: jnp.sum(
            lj.unroll(*lj.recurrent_dropout(cell, p, junk, key=key, **opts), lengths=lengths)[0]
        )
    )(params)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(g))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_stacked_bidirectional_jit_and_low_precision(dtype):
    cell = lj.lstm(5, proj_size=3, dtype=dtype)
    net = lj.recurrent(
        cell, 2, True, input_dropout=0.2, recurrent_dropout=0.2, zoneout=0.2, state_noise=0.01
    )
    params = net.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I)).astype(dtype)
    key = jax.random.key(2)
    o, carry = jax.jit(lambda p, x, k: net.apply(p, x, key=k))(params, xs, key)
    assert o.shape == (B, T, 6) and o.dtype == dtype
    assert carry.h.shape == (4, B, 3) and carry.c.shape == (4, B, 5)
    if dtype == jnp.bfloat16:
        net32 = lj.recurrent(
            lj.lstm(5, proj_size=3),
            2,
            True,
            input_dropout=0.2,
            recurrent_dropout=0.2,
            zoneout=0.2,
            state_noise=0.01,
        )
        up = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
        o32, _ = net32.apply(up, xs.astype(jnp.float32), key=key)
        np.testing.assert_allclose(np.float32(o), o32, atol=5e-2)

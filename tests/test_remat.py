"""Gradient checkpointing: remat gives the gradients of plain BPTT, in less memory.

The reference is `jax.lax.scan` with the same step function, differentiated
by autodiff (plain BPTT, every intermediate stored); checked in float64 to
1e-12 relative, for every cell, with and without `lengths`, with T not a
multiple of the segment length.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax._remat import default_segment_length, scan_with_remat

B, I, H = 3, 4, 5
CELLS = {
    "rnn": lambda: lj.rnn(H, dtype=jnp.float64),
    "lstm": lambda: lj.lstm(H, dtype=jnp.float64),
    "lstm_peephole": lambda: lj.lstm(
        H, peephole=True, peephole_init=jax.nn.initializers.normal(0.5), dtype=jnp.float64
    ),
    "gru": lambda: lj.gru(H, dtype=jnp.float64),
    "gru_reset_before": lambda: lj.gru(H, reset_after=False, dtype=jnp.float64),
    "jordan": lambda: lj.jordan(H, 2, dtype=jnp.float64),
}


def make_body(cell, params, lengths):
    """The masked step of `lj.unroll`, written out: inputs are (x_t [B, I], t)."""

    def body(carry, inputs):
        x, t = inputs
        new_carry, y = cell.step(params, carry, x)
        if lengths is None:
            return new_carry, y
        valid = (t < lengths)[:, None]
        new_carry = jax.tree_util.tree_map(lambda n, o: jnp.where(valid, n, o), new_carry, carry)
        return new_carry, jnp.where(valid, y, jnp.zeros_like(y))

    return body


def make_loss(cell, scan, lengths):
    """Loss over every output and the final carry, so all paths carry gradient."""

    def loss(params, xs_t, carry0):
        body = make_body(cell, params, lengths)
        carry, ys = scan(body, carry0, (xs_t, jnp.arange(xs_t.shape[0])))
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        leaves = jax.tree_util.tree_leaves(carry)
        return jnp.sum(weights * jnp.tanh(ys)) + sum(jnp.sum(leaf**2) for leaf in leaves)

    return loss


def data(cell, T, seed=0):
    kp, kx, kc = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = cell.init(kp, I)
    xs_t = jax.random.normal(kx, (T, B, I), jnp.float64)
    carry0 = jax.tree_util.tree_map(
        lambda z: 0.3 * jax.random.normal(kc, z.shape, jnp.float64), cell.initial_carry((B,))
    )
    return params, xs_t, carry0


def assert_trees_close(got, want, rtol=1e-12, atol=1e-12):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


# Every cell with lengths at T = 3*3 + 2, the three main cells also without;
# the other splits of T (a multiple of k, the default k, k > T) on the LSTM
# only, to keep the suite short on a small shared machine.
CASES = (
    [(name, True, 11, 3) for name in sorted(CELLS)]
    + [(name, False, 11, 3) for name in ("rnn", "lstm", "gru")]
    + [("lstm", False, T, k) for T, k in ((12, 4), (9, None), (2, 5))]
)


@pytest.mark.parametrize("name,with_lengths,T,k", CASES)
def test_remat_gradients_equal_plain_bptt(name, with_lengths, T, k):
    cell = CELLS[name]()
    params, xs_t, carry0 = data(cell, T)
    lengths = jnp.array([T, max(T - 4, 0), 1])[:B] if with_lengths else None

    def remat_scan(body, carry, xs):
        return scan_with_remat(body, carry, xs, k)

    plain = jax.value_and_grad(make_loss(cell, jax.lax.scan, lengths), argnums=(0, 1, 2))
    remat = jax.value_and_grad(make_loss(cell, remat_scan, lengths), argnums=(0, 1, 2))
    # One compilation for both: the suite runs on a small shared machine.
    got, want = jax.jit(lambda *a: (remat(*a), plain(*a)))(params, xs_t, carry0)
    assert_trees_close(got, want)


def test_prepare_runs_inside_the_segments():
    """Hoisting the projection per segment (prepare) gives the same gradients."""
    cell = CELLS["lstm"]()
    params, xs_t, carry0 = data(cell, 10)

    def loss(params, use_prepare):
        if use_prepare:

            def body(c, px):
                return cell.recur(params, c, px)

            carry, ys = scan_with_remat(
                body, carry0, xs_t, 4, prepare=lambda x: cell.project(params, x)
            )
        else:
            carry, ys = jax.lax.scan(lambda c, x: cell.step(params, c, x), carry0, xs_t)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry.c)

    got, want = jax.jit(lambda p: (jax.grad(loss)(p, True), jax.grad(loss)(p, False)))(params)
    assert_trees_close(got, want)


def test_forward_matches_scan_with_unroll_and_pytree_inputs():
    def body(c, inputs):
        a, b = inputs["a"], inputs["b"]
        c = jnp.tanh(c * 0.9 + a) + b
        return c, {"y": c, "sq": c**2}

    xs = {"a": jnp.linspace(-1, 1, 14).reshape(7, 2), "b": jnp.ones((7, 2)) * 0.1}
    want = jax.lax.scan(body, jnp.zeros(2), xs)
    got = scan_with_remat(body, jnp.zeros(2), xs, 3, unroll=2)
    assert_trees_close(got, want, rtol=1e-14, atol=1e-14)


def test_empty_sequence_returns_initial_carry():
    carry, ys = scan_with_remat(lambda c, x: (c + x, c), jnp.ones(2), jnp.zeros((0, 2)))
    np.testing.assert_array_equal(carry, jnp.ones(2))
    assert ys.shape == (0, 2)


def test_default_segment_length_is_about_sqrt_t():
    assert [default_segment_length(t) for t in (1, 2, 10, 100, 10_000)] == [1, 1, 3, 10, 100]


def test_bad_segment_length_and_ragged_inputs_are_rejected():
    body = lambda c, x: (c, x)  # noqa: E731
    with pytest.raises(ValueError, match="segment_length must be an int >= 1; got 0"):
        scan_with_remat(body, jnp.zeros(1), jnp.zeros((4, 1)), 0)
    with pytest.raises(ValueError, match="same leading"):
        scan_with_remat(body, jnp.zeros(1), (jnp.zeros((4, 1)), jnp.zeros((5, 1))), 2)


def test_remat_stores_less_than_plain_bptt():
    """XLA's own buffer accounting: temporaries shrink by several times at T=400."""
    cell = lj.lstm(32)
    params = cell.init(jax.random.PRNGKey(0), 4)
    xs_t = jnp.ones((400, 2, 4), jnp.float32)

    def loss(params, scan):
        c0 = cell.initial_carry((2,))
        carry, _ = scan(lambda c, x: cell.step(params, c, x), c0, xs_t)
        return jnp.sum(carry.h)

    def temp_bytes(scan):
        compiled = jax.jit(jax.grad(lambda p: loss(p, scan))).lower(params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain = temp_bytes(jax.lax.scan)
    remat = temp_bytes(scan_with_remat)
    assert remat * 4 < plain, (remat, plain)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_unroll_remat_option_equals_plain(name, unroll):
    cell = CELLS[name]()
    params, xs_t, _ = data(cell, 13)
    xs = jnp.swapaxes(xs_t, 0, 1)
    lengths = jnp.array([13, 6, 0])

    def loss(params, xs, remat):
        ys, carry = unroll(cell, params, xs, lengths=lengths, reverse=True, remat=remat)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c) for c in jax.tree_util.tree_leaves(carry))

    got = jax.grad(loss, argnums=(0, 1))(params, xs, 4)
    want = jax.grad(loss, argnums=(0, 1))(params, xs, False)
    assert_trees_close(got, want)

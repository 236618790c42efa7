"""Variable lengths: a padded batch behaves as each sequence run alone.

Property tests over random batches of lengths (hypothesis): outputs, final
carry, parameter gradients and input gradients of the padded batch equal
those of every sequence unrolled by itself without padding, forward, reverse
and bidirectional, in both placements of the input projection and with
remat. The padding is filled with junk drawn from NaN, +-inf, 1e30 and 1e3:
it must reach no value and no gradient (float64, rtol 1e-9).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_zoo import CELL_FACTORIES, CELL_IDS, INPUT_SIZE
from conftest import unroll_with
from hypothesis import given, settings
from hypothesis import strategies as st

import lstmjax as lj

T = 6
TOL = dict(rtol=1e-9, atol=1e-12)  # float64 throughout

# A fixed batch size keeps one compiled program per cell; the lengths vary.
BATCH = 3
lengths_strategy = st.lists(st.integers(0, T), min_size=BATCH, max_size=BATCH)
junk_strategy = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, 1e3])


def padded_batch(lengths, seed=0, junk=1e3):
    xs = jax.random.normal(jax.random.key(seed), (len(lengths), T, INPUT_SIZE), jnp.float64)
    # Fill the padding with junk: it must not leak into anything.
    t = jnp.arange(T)[None, :, None]
    return jnp.where(t < jnp.asarray(lengths)[:, None, None], xs, junk)


# Every cell in both directions with the CPU layout; the accelerator layout
# and remat for the gated cells and Jordan (the others share their code path).
CASES = [(c, r, "cpu_layout", False) for c in range(len(CELL_FACTORIES)) for r in (False, True)]
CASES += [
    (CELL_IDS.index(name), r, layout, remat)
    for name in ("lstm_peephole", "gru", "jordan")
    for r in (False, True)
    for layout, remat in (("accelerator_layout", False), ("cpu_layout", 2))
]
CASE_IDS = [
    f"{CELL_IDS[c]}-{'reverse' if r else 'forward'}-{'remat' if m else layout}"
    for c, r, layout, m in CASES
]


@functools.cache
def programs(cell_index, reverse, layout, remat):
    """Jitted padded run and single-sequence reference, cached across examples."""
    cell = CELL_FACTORIES[cell_index](jnp.float64)
    run = functools.partial(unroll_with(layout), reverse=reverse, remat=remat)

    def padded_loss(params, xs, lengths, w):
        ys, final = run(cell, params, xs, lengths=lengths)
        return jnp.sum(w * ys), (ys, final)

    padded = jax.jit(jax.value_and_grad(padded_loss, argnums=(0, 1), has_aux=True))
    return cell, padded, reference(cell_index, reverse)


@functools.cache
def reference(cell_index, reverse):
    """One sequence [1, n, I] unrolled alone, without padding (one compile per n)."""
    cell = CELL_FACTORIES[cell_index](jnp.float64)

    def single_loss(params, x, w):
        ys, final = lj.unroll(cell, params, x, reverse=reverse)
        return jnp.sum(w * ys), (ys, final)

    return jax.jit(jax.value_and_grad(single_loss, argnums=(0, 1), has_aux=True))


@pytest.mark.parametrize("cell_index, reverse, layout, remat", CASES, ids=CASE_IDS)
@settings(max_examples=6, deadline=None)
@given(lengths=lengths_strategy, junk=junk_strategy)
def test_padded_equals_each_alone(cell_index, reverse, layout, remat, lengths, junk):
    cell, padded, single = programs(cell_index, reverse, layout, remat)
    params = cell.init(jax.random.key(1), INPUT_SIZE)
    xs = padded_batch(lengths, junk=junk)
    w = jax.random.normal(jax.random.key(2), (BATCH, T, cell.output_size), jnp.float64)
    (_, (ys, final)), (grads, dxs) = padded(params, xs, jnp.asarray(lengths), w)

    grad_sum = jax.tree_util.tree_map(jnp.zeros_like, params)
    for b, n in enumerate(lengths):
        (_, (ys_b, final_b)), (g_b, dx_b) = single(params, xs[b : b + 1, :n], w[b : b + 1, :n])
        chex.assert_trees_all_close(ys[b : b + 1, :n], ys_b, **TOL)
        np.testing.assert_array_equal(ys[b, n:], 0.0)  # outputs past the length are zero
        chex.assert_trees_all_close(dxs[b : b + 1, :n], dx_b, **TOL)
        np.testing.assert_array_equal(dxs[b, n:], 0.0)  # the padding gets no gradient
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda leaf, b=b: leaf[b : b + 1], final), final_b, **TOL
        )
        grad_sum = jax.tree_util.tree_map(jnp.add, grad_sum, g_b)
    chex.assert_trees_all_close(grads, grad_sum, **TOL)


BIDI = lj.recurrent(lj.lstm(4, dtype=jnp.float64), num_layers=2, bidirectional=True)


@jax.jit
@functools.partial(jax.value_and_grad, has_aux=True)
def bidi_loss(params, xs, lengths):
    o, carry = BIDI.apply(params, xs, lengths=lengths)
    return jnp.sum(jnp.sin(o)), (o, carry)


@jax.jit
@functools.partial(jax.value_and_grad, has_aux=True)
def bidi_loss_alone(params, xs):
    o, carry = BIDI.apply(params, xs)
    return jnp.sum(jnp.sin(o)), (o, carry)


@settings(max_examples=10, deadline=None)
@given(lengths=lengths_strategy, junk=junk_strategy)
def test_bidirectional_padded_equals_each_alone(lengths, junk):
    params = BIDI.init(jax.random.key(3), INPUT_SIZE)
    xs = padded_batch(lengths, junk=junk)
    (_, (o, (h, c))), g = bidi_loss(params, xs, jnp.asarray(lengths))
    g_ref = jax.tree_util.tree_map(jnp.zeros_like, params)
    for b, n in enumerate(lengths):
        (_, (o1, (h1, c1))), g1 = bidi_loss_alone(params, xs[b : b + 1, :n])
        chex.assert_trees_all_close(o[b : b + 1, :n], o1, **TOL)
        np.testing.assert_array_equal(o[b, n:], 0.0)
        chex.assert_trees_all_close((h[:, b : b + 1], c[:, b : b + 1]), (h1, c1), **TOL)
        g_ref = jax.tree_util.tree_map(jnp.add, g_ref, g1)
    chex.assert_trees_all_close(g, g_ref, **TOL)


def test_reverse_with_lengths_is_not_reverse_from_padded_end(unroll):
    cell = lj.rnn(3, dtype=jnp.float64)
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    xs = padded_batch([3, 6])
    ys, _ = unroll(cell, params, xs, lengths=jnp.array([3, 6]), reverse=True)
    # The reversed pass over the short sequence starts at its own step 2, so
    # its output at step 2 depends on x_2 alone (zero initial state).
    first = cell.step(params, cell.initial_carry((1,)), xs[0:1, 2])[1]
    chex.assert_trees_all_close(ys[0:1, 2], first, **TOL)

"""Lengths and resets: a padded batch with episode resets equals each segment run alone.

A sequence of length n is cut into segments by its resets (a reset at step t
starts a new segment at t, from the sequence's initial carry); the padding past
n is filled with junk drawn from NaN, +-inf, 1e30 and 1e3. Property tests
(hypothesis) over random lengths, reset patterns and junk: the batch's outputs,
final carry and the gradients with respect to the parameters, the inputs and
the initial carry equal those of every segment unrolled by itself without
padding, forward and reverse (each segment run backward on its own), for every
cell of the zoo, in both placements of the input projection and with remat;
and through a stacked bidirectional net. Outputs and input gradients past the
length are exactly zero. float64, rtol 1e-9.

(Lengths alone are the case of no resets, pinned as an explicit example.)
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_zoo import CELL_FACTORIES, CELL_IDS, INPUT_SIZE
from conftest import unroll_with
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lstmjax as lj

B, T = 3, 7
TOL = dict(rtol=1e-9, atol=1e-12)
lengths_strategy = st.lists(st.integers(0, T), min_size=B, max_size=B)
resets_strategy = st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B)
junk_strategy = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, 1e3])
NO_RESETS = [[False] * T] * B
EVERY_STEP = [[True] * T] * B


def segments(resets_row, n):
    """[(start, stop)] of the segments of one sequence of length n."""
    starts = [0] + [t for t in range(1, n) if resets_row[t]]
    return list(zip(starts, starts[1:] + [n], strict=True)) if n else []


def data(cell, lengths, junk, seed=0):
    """Inputs with junk in the padding, a random initial carry, loss weights."""
    xs = jax.random.normal(jax.random.key(seed), (B, T, INPUT_SIZE), jnp.float64)
    t = jnp.arange(T)[None, :, None]
    xs = jnp.where(t < jnp.asarray(lengths)[:, None, None], xs, junk)
    c0 = jax.tree_util.tree_map(
        lambda s: jax.random.normal(jax.random.key(seed + 1), s.shape, jnp.float64),
        jax.eval_shape(lambda: cell.initial_carry(B)),
    )
    w = jax.random.normal(jax.random.key(seed + 2), (B, T, cell.output_size), jnp.float64)
    return xs, c0, w


def rows(tree, b):
    return jax.tree_util.tree_map(lambda a: a[b : b + 1], tree)


# Every cell in both directions with the CPU layout; the accelerator layout
# and remat for the gated cells and Jordan (the others share their code path).
CASES = [(c, r, "cpu_layout", False) for c in range(len(CELL_FACTORIES)) for r in (False, True)]
CASES += [
    (CELL_IDS.index(name), r, layout, remat)
    for name in ("lstm_peephole", "gru", "jordan")
    for r in (False, True)
    for layout, remat in (("accelerator_layout", False), ("cpu_layout", 3))
]
CASE_IDS = [
    f"{CELL_IDS[c]}-{'reverse' if r else 'forward'}-{'remat' if m else layout}"
    for c, r, layout, m in CASES
]


@functools.cache
def programs(cell_index, reverse, layout, remat):
    """The jitted batch run and the jitted single-segment reference, cached across examples."""
    cell = CELL_FACTORIES[cell_index](jnp.float64)
    run = functools.partial(unroll_with(layout), cell, reverse=reverse, remat=remat)

    def batch_loss(params, xs, c0, lengths, resets, w):
        ys, final = run(params, xs, c0, lengths=lengths, resets=resets)
        return jnp.sum(w * ys), (ys, final)

    batch = jax.jit(jax.value_and_grad(batch_loss, argnums=(0, 1, 2), has_aux=True))
    return cell, batch, alone(cell_index, reverse)


@functools.cache
def alone(cell_index, reverse):
    """One segment [1, n, I] unrolled on its own with plain `lj.unroll` (one compile per n)."""
    cell = CELL_FACTORIES[cell_index](jnp.float64)

    def alone_loss(params, x, c0, w):
        ys, final = lj.unroll(cell, params, x, c0, reverse=reverse)
        return jnp.sum(w * ys), (ys, final)

    return jax.jit(jax.value_and_grad(alone_loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize("cell_index, reverse, layout, remat", CASES, ids=CASE_IDS)
@settings(max_examples=8, deadline=None)
@given(lengths=lengths_strategy, resets=resets_strategy, junk=junk_strategy)
@example(lengths=[T, 4, 0], resets=NO_RESETS, junk=np.nan)  # lengths alone
@example(lengths=[T, T, 2], resets=EVERY_STEP, junk=np.inf)  # every step its own segment
def test_batch_equals_each_segment_alone(cell_index, reverse, layout, remat, lengths, resets, junk):
    cell, batch, run_alone = programs(cell_index, reverse, layout, remat)
    params = cell.init(jax.random.key(3), INPUT_SIZE)
    xs, c0, w = data(cell, lengths, junk)
    (_, (ys, final)), (grads, dxs, dc0) = batch(
        params, xs, c0, jnp.asarray(lengths), jnp.asarray(resets), w
    )
    expected_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
    for b, n in enumerate(lengths):
        c0_b = rows(c0, b)
        final_b = c0_b
        dc0_b = jax.tree_util.tree_map(jnp.zeros_like, c0_b)
        for start, stop in segments(resets[b], n):
            (_, (ys_s, final_s)), (g, dx_s, dc0_s) = run_alone(
                params, xs[b : b + 1, start:stop], c0_b, w[b : b + 1, start:stop]
            )
            chex.assert_trees_all_close(ys[b : b + 1, start:stop], ys_s, **TOL)
            chex.assert_trees_all_close(dxs[b : b + 1, start:stop], dx_s, **TOL)
            expected_grads = jax.tree_util.tree_map(jnp.add, expected_grads, g)
            dc0_b = jax.tree_util.tree_map(jnp.add, dc0_b, dc0_s)
            # forward ends with the last segment; reverse ends with the first
            if (stop == n) if not reverse else (start == 0):
                final_b = final_s
        np.testing.assert_array_equal(ys[b, n:], 0.0)  # outputs past the length are zero
        np.testing.assert_array_equal(dxs[b, n:], 0.0)  # the padding gets no gradient
        chex.assert_trees_all_close(rows(final, b), final_b, **TOL)
        chex.assert_trees_all_close(rows(dc0, b), dc0_b, **TOL)
    chex.assert_trees_all_close(grads, expected_grads, **TOL)


NET = lj.recurrent(lj.lstm(4, dtype=jnp.float64), num_layers=2, bidirectional=True)


@jax.jit
@functools.partial(jax.value_and_grad, has_aux=True)
def net_loss(params, xs, lengths, resets):
    o, carry = NET.apply(params, xs, lengths=lengths, resets=resets)
    return jnp.sum(jnp.sin(o)), (o, carry)


@jax.jit
@functools.partial(jax.value_and_grad, has_aux=True)
def net_loss_alone(params, xs):  # one compile per segment length
    o, carry = NET.apply(params, xs)
    return jnp.sum(jnp.sin(o)), (o, carry)


@settings(max_examples=10, deadline=None)
@given(lengths=lengths_strategy, resets=resets_strategy, junk=junk_strategy)
@example(lengths=[T, 4, 0], resets=NO_RESETS, junk=np.nan)
def test_stacked_bidirectional_net_equals_each_segment_alone(lengths, resets, junk):
    params = NET.init(jax.random.key(4), INPUT_SIZE)
    xs, _, _ = data(NET.cell, lengths, junk, seed=5)
    (_, (o, (h, c))), g = net_loss(params, xs, jnp.asarray(lengths), jnp.asarray(resets))
    g_ref = jax.tree_util.tree_map(jnp.zeros_like, params)
    for b, n in enumerate(lengths):
        for start, stop in segments(resets[b], n):
            (_, (o_s, (h_s, c_s))), g_s = net_loss_alone(params, xs[b : b + 1, start:stop])
            chex.assert_trees_all_close(o[b : b + 1, start:stop], o_s, **TOL)
            g_ref = jax.tree_util.tree_map(jnp.add, g_ref, g_s)
            # forward carries end with the last segment, backward ones with the first
            for layer in range(2):
                for d, ends_here in ((2 * layer, stop == n), (2 * layer + 1, start == 0)):
                    if ends_here:
                        chex.assert_trees_all_close(
                            (h[d, b], c[d, b]), (h_s[d, 0], c_s[d, 0]), **TOL
                        )
        np.testing.assert_array_equal(o[b, n:], 0.0)
        if n == 0:  # an empty sequence keeps the zero initial carry in every direction
            np.testing.assert_array_equal((h[:, b], c[:, b]), 0.0)
    chex.assert_trees_all_close(g, g_ref, **TOL)


def test_reverse_with_lengths_is_not_reverse_from_padded_end(unroll):
    cell = lj.rnn(3, dtype=jnp.float64)
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    xs = jax.random.normal(jax.random.key(0), (2, 6, INPUT_SIZE), jnp.float64)
    ys, _ = unroll(cell, params, xs, lengths=jnp.array([3, 6]), reverse=True)
    # The reversed pass over the short sequence starts at its own step 2, so
    # its output at step 2 depends on x_2 alone (zero initial state).
    first = cell.step(params, cell.initial_carry((1,)), xs[0:1, 2])[1]
    chex.assert_trees_all_close(ys[0:1, 2], first, **TOL)

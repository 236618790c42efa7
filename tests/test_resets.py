"""Episode resets: a batch with `resets` equals running each segment on its own.

A reset at step t starts a new segment at t; the carry there is set back to
the sequence's initial carry. Property tests (hypothesis) over random reset
patterns and lengths: outputs, final carry and parameter gradients equal
those of every segment unrolled alone from the same initial carry, forward
and reverse (each segment run backward on its own), in both placements of
the input projection and with remat; and through a stacked bidirectional
net. float64, rtol 1e-9.
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

B, T = 2, 7
TOL = dict(rtol=1e-9, atol=1e-12)
resets_strategy = st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=B, max_size=B)
lengths_strategy = st.lists(st.integers(0, T), min_size=B, max_size=B)


def segments(resets_row, n):
    """[(start, stop)] of the segments of one sequence of length n."""
    starts = [0] + [t for t in range(1, n) if resets_row[t]]
    return list(zip(starts, starts[1:] + [n], strict=True)) if n else []


def data(cell, seed=0):
    xs = jax.random.normal(jax.random.key(seed), (B, T, INPUT_SIZE), jnp.float64)
    c0 = jax.tree_util.tree_map(
        lambda s: jax.random.normal(jax.random.key(seed + 1), s.shape, jnp.float64),
        jax.eval_shape(lambda: cell.initial_carry(B)),
    )
    w = jax.random.normal(jax.random.key(seed + 2), (B, T, cell.output_size), jnp.float64)
    return xs, c0, w


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
    cell = CELL_FACTORIES[cell_index](jnp.float64)
    run = functools.partial(unroll_with(layout), cell, reverse=reverse, remat=remat)

    def batch_loss(params, xs, c0, lengths, resets, w):
        ys, final = run(params, xs, c0, lengths=lengths, resets=resets)
        return jnp.sum(w * ys), (ys, final)

    grad = jax.value_and_grad(batch_loss, has_aux=True)
    return cell, jax.jit(grad), alone(cell_index, reverse)


@functools.cache
def alone(cell_index, reverse):
    """One segment [1, n, I] unrolled on its own (one compile per n)."""
    cell = CELL_FACTORIES[cell_index](jnp.float64)

    def alone_loss(params, x, c0, w):
        ys, final = lj.unroll(cell, params, x, c0, reverse=reverse)
        return jnp.sum(w * ys), (ys, final)

    return jax.jit(jax.value_and_grad(alone_loss, has_aux=True))


@pytest.mark.parametrize("cell_index, reverse, layout, remat", CASES, ids=CASE_IDS)
@settings(max_examples=5, deadline=None)
@given(resets=resets_strategy, lengths=lengths_strategy)
def test_resets_equal_segments_alone(cell_index, reverse, layout, remat, resets, lengths):
    cell, batch, run_alone = programs(cell_index, reverse, layout, remat)
    params = cell.init(jax.random.key(3), INPUT_SIZE)
    xs, c0, w = data(cell)
    (_, (ys, final)), grads = batch(params, xs, c0, jnp.asarray(lengths), jnp.asarray(resets), w)
    expected_grads = jax.tree_util.tree_map(jnp.zeros_like, params)
    for b in range(B):
        c0_b = jax.tree_util.tree_map(lambda a, b=b: a[b : b + 1], c0)
        final_b = c0_b
        parts = segments(resets[b], lengths[b])
        for start, stop in parts:
            (_, (ys_s, final_s)), g = run_alone(
                params, xs[b : b + 1, start:stop], c0_b, w[b : b + 1, start:stop]
            )
            chex.assert_trees_all_close(ys[b : b + 1, start:stop], ys_s, **TOL)
            expected_grads = jax.tree_util.tree_map(jnp.add, expected_grads, g)
            # forward ends with the last segment; reverse ends with the first
            if (stop == lengths[b]) if not reverse else (start == 0):
                final_b = final_s
        np.testing.assert_array_equal(ys[b, lengths[b] :], 0.0)
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda a, b=b: a[b : b + 1], final), final_b, **TOL
        )
    chex.assert_trees_all_close(grads, expected_grads, **TOL)


NET = lj.recurrent(lj.gru(3, dtype=jnp.float64), num_layers=2, bidirectional=True)
NET_APPLY = jax.jit(NET.apply)  # one compile per segment length


@settings(max_examples=8, deadline=None)
@given(resets=resets_strategy, lengths=lengths_strategy)
def test_bidirectional_net_with_resets_equals_segments_alone(resets, lengths):
    params = NET.init(jax.random.key(4), INPUT_SIZE)
    xs = jax.random.normal(jax.random.key(5), (B, T, INPUT_SIZE), jnp.float64)
    o, h = jax.jit(lambda p, x, n, r: NET.apply(p, x, lengths=n, resets=r))(
        params, xs, jnp.asarray(lengths), jnp.asarray(resets)
    )
    for b in range(B):
        parts = segments(resets[b], lengths[b])
        for start, stop in parts:
            o_s, h_s = NET_APPLY(params, xs[b : b + 1, start:stop])
            chex.assert_trees_all_close(o[b : b + 1, start:stop], o_s, **TOL)
            for layer in range(
                2
            ):  # forward carries end with the last segment, backward with the first
                if stop == lengths[b]:
                    chex.assert_trees_all_close(h[2 * layer, b], h_s[2 * layer, 0], **TOL)
                if start == 0:
                    chex.assert_trees_all_close(h[2 * layer + 1, b], h_s[2 * layer + 1, 0], **TOL)

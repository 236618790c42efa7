"""`unroll(mask=)`: a masked step keeps the carry and outputs zeros (holes allowed).

Reference: a plain Python loop over `cell.step` that skips the masked steps.
Whatever lies at a masked step (NaN, inf) reaches no value and no gradient: the
gradient equals the one with zeros there. float64, 1e-10.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_zoo import CELL_FACTORIES, CELL_IDS, INPUT_SIZE

import lstmjax as lj

B, T = 3, 7
MASK = jnp.array(
    [
        [1, 0, 1, 1, 0, 0, 1],  # holes
        [1, 1, 1, 1, 1, 1, 1],  # every step
        [0, 0, 1, 0, 1, 0, 0],  # late start, a hole, early stop
    ],
    bool,
)
TOL = dict(rtol=1e-10, atol=1e-10)


def setup(factory):
    cell = factory(jnp.float64)
    params = cell.init(jax.random.PRNGKey(0), INPUT_SIZE)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, INPUT_SIZE), jnp.float64)
    return cell, params, xs


def reference(cell, params, xs, mask, reverse=False):
    """Each sequence alone, stepping only where the mask holds."""
    ys = np.zeros((B, T, cell.output_size))
    finals = []
    for b in range(B):
        carry = cell.initial_carry((1,))
        order = range(T - 1, -1, -1) if reverse else range(T)
        for t in order:
            if mask[b, t]:
                carry, y = cell.step(params, carry, xs[b : b + 1, t])
                ys[b, t] = np.asarray(y[0])
        finals.append(carry)
    final = jax.tree_util.tree_map(lambda *leaves: jnp.concatenate(leaves), *finals)
    return ys, final


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("factory", CELL_FACTORIES, ids=CELL_IDS)
def test_mask_with_holes_equals_skipping_the_steps(factory, reverse):
    cell, params, xs = setup(factory)
    ys, final = lj.unroll(cell, params, xs, mask=MASK, reverse=reverse)
    want_ys, want_final = reference(cell, params, xs, MASK, reverse)
    np.testing.assert_allclose(ys, want_ys, **TOL)
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(want_final), strict=True):
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("junk", [jnp.nan, jnp.inf, 1e30], ids=["nan", "inf", "huge"])
@pytest.mark.parametrize("name", ["lstm", "gru", "min_gru"])
def test_junk_at_masked_steps_reaches_no_value_and_no_gradient(name, junk):
    cell, params, xs = setup(CELL_FACTORIES[CELL_IDS.index(name)])
    clean = jnp.where(MASK[..., None], xs, 0.0)
    dirty = jnp.where(MASK[..., None], xs, junk)

    def loss(p, x):
        ys, final = lj.unroll(cell, p, x, mask=MASK)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(final))

    grad = jax.grad(loss, argnums=(0, 1))
    for got, want in zip(
        jax.tree.leaves(grad(params, dirty)), jax.tree.leaves(grad(params, clean)), strict=True
    ):
        assert bool(jnp.all(jnp.isfinite(got)))
        np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(loss(params, dirty), loss(params, clean), **TOL)


def test_mask_and_lengths_combine_and_follow_time_major():
    cell, params, xs = setup(CELL_FACTORIES[CELL_IDS.index("lstm")])
    lengths = jnp.array([5, 7, 3])
    both = MASK & (jnp.arange(T)[None, :] < lengths[:, None])
    ys, final = lj.unroll(cell, params, xs, mask=MASK, lengths=lengths)
    want_ys, want_final = reference(cell, params, xs, both)
    np.testing.assert_allclose(ys, want_ys, **TOL)
    np.testing.assert_allclose(final.c, want_final.c, **TOL)
    ys_tm, _ = lj.unroll(cell, params, jnp.swapaxes(xs, 0, 1), mask=MASK.T, time_major=True)
    np.testing.assert_allclose(
        jnp.swapaxes(ys_tm, 0, 1), lj.unroll(cell, params, xs, mask=MASK)[0], **TOL
    )


@pytest.mark.parametrize("method", ["newton", "quasi_newton", "elk"])
def test_solvers_take_the_mask_too(method):
    cell, params, xs = setup(CELL_FACTORIES[CELL_IDS.index("gru")])
    got = lj.unroll(cell, params, xs, mask=MASK, method=method)
    want = lj.unroll(cell, params, xs, mask=MASK, method="scan")
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, **TOL)

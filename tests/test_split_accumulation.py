"""`unroll`'s column blocks for weight-gradient accumulation change nothing but speed.

On CPU, `unroll` closes over mid-sized weight matrices (65,536 to 131,072
elements) in column blocks, so that the per-step gradient adds stay on one
thread (see `lstmjax._scan.column_blocks`). The conformance suite uses
small cells, whose matrices are never cut; here the hidden sizes are chosen
so that they are, and the results and gradients are compared, in float64 at
1e-12 relative, against the same `unroll` with the blocks turned off (`lj.Scan(column_blocks=False)`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax._scan import ACCUMULATION_BLOCK, column_blocks, join_blocks

B, T, I = 3, 6, 8
CELLS = {
    # w_h [128, 512] = 65,536 elements: two blocks
    "lstm": lambda: lj.lstm(128, peephole=True, dtype=jnp.float64),
    # w_h [256, 256]: two blocks
    "rnn": lambda: lj.rnn(256, dtype=jnp.float64),
    # w_h [160, 480] = 76,800 elements: 480 / 4 columns, three-and-a-bit blocks' worth
    "gru": lambda: lj.gru(160, dtype=jnp.float64),
}


def blocks_of(a):
    b = column_blocks({"w": a})["w"]
    return [x.shape for x in b] if isinstance(b, list) else None


def test_which_matrices_are_cut():
    assert ACCUMULATION_BLOCK == 32768
    assert blocks_of(jnp.zeros((128, 512))) == [(128, 256), (128, 256)]
    assert blocks_of(jnp.zeros((256, 512))) == [(256, 128)] * 4
    # below the thread-split size, above four blocks' worth, or not a matrix: whole
    assert blocks_of(jnp.zeros((128, 384))) is None
    assert blocks_of(jnp.zeros((256, 1024))) is None
    assert blocks_of(jnp.zeros((65536,))) is None


def test_join_inverts_split():
    params = lj.lstm(128, peephole=True).init(jax.random.PRNGKey(0), I)
    blocks = column_blocks(params)
    assert isinstance(blocks.w_h, list)
    joined = join_blocks(blocks)
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(joined), strict=True
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_same_outputs_and_gradients(name):
    cell = CELLS[name]()
    params = cell.init(jax.random.PRNGKey(1), I)
    assert any(blocks_of(leaf) for leaf in jax.tree_util.tree_leaves(params)), "nothing is cut"
    xs = jax.random.normal(jax.random.PRNGKey(2), (B, T, I), jnp.float64)
    lengths = jnp.array([T, 2, 0])

    def loss(params, xs, split):
        ys, carry = lj.unroll(
            cell, params, xs, lengths=lengths, method=lj.Scan(column_blocks=split)
        )
        leaves = jax.tree_util.tree_leaves(carry)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in leaves)

    def run(split: bool):
        grad = jax.value_and_grad(lambda p, x: loss(p, x, split), argnums=(0, 1))
        return jax.jit(grad)(params, xs)

    (v_on, g_on), (v_off, g_off) = run(True), run(False)
    np.testing.assert_allclose(v_on, v_off, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g_on), jax.tree_util.tree_leaves(g_off), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)

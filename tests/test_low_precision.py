"""bfloat16 and float16: every cell initialises, unrolls and differentiates in low precision.

The reference is the same computation in float32 with the same parameters
and inputs (the low-precision values, upcast exactly). bfloat16 keeps 8
significant bits (relative rounding 2**-9 = 2e-3 per operation); over T = 6
steps the outputs stay within 0.03 and the gradients within 5% of their
largest entry (float16, with 11 bits, within a tenth of that). Claims:
  * `init` gives parameters of the requested dtype; the recurrent blocks,
    drawn in float32 (LAPACK has no low-precision QR) and rounded, are
    orthogonal to bfloat16 precision;
  * `unroll` (with lengths) and `grad` keep the dtype and agree with float32;
  * float32 inputs with low-precision parameters promote to float32.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cell_zoo import ALL_CELLS, CELL_IDS, INPUT_SIZE

import lstmjax as lj

B, T = 3, 6
# dtype -> (output atol, gradient tolerance as a fraction of the largest entry)
TOLERANCES = {jnp.bfloat16: (3e-2, 5e-2), jnp.float16: (3e-3, 5e-3)}
DTYPE_IDS = ["bfloat16", "float16"]


def upcast(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), tree)


@functools.partial(jax.jit, static_argnums=0)  # one program per cell and dtype
def run(cell, params, xs):
    """Outputs, final carry and the gradient of a scalar loss through `unroll`."""
    lengths = jnp.array([T, 4, 1])

    def loss(params):
        ys, carry = lj.unroll(cell, params, xs, lengths=lengths)
        leaves = [ys, *jax.tree_util.tree_leaves(carry)]
        return sum(jnp.sum(jnp.sin(leaf.astype(jnp.float32))) for leaf in leaves), (ys, carry)

    grads, (ys, carry) = jax.grad(loss, has_aux=True)(params)
    return ys, carry, grads


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=DTYPE_IDS)
@pytest.mark.parametrize("factory", [f for _, f in ALL_CELLS], ids=CELL_IDS)
def test_low_precision_agrees_with_float32(factory, dtype):
    atol, grad_tol = TOLERANCES[dtype]
    cell = factory(dtype)
    params = cell.init(jax.random.PRNGKey(0), INPUT_SIZE)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(dtype)}
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, INPUT_SIZE)).astype(dtype)

    ys, carry, grads = run(cell, params, xs)
    ys32, carry32, grads32 = run(factory(jnp.float32), upcast(params), upcast(xs))

    assert ys.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(np.float32(ys), ys32, atol=atol)
    for a, b in zip(
        jax.tree_util.tree_leaves(carry), jax.tree_util.tree_leaves(carry32), strict=True
    ):
        assert a.dtype == jnp.dtype(dtype)
        np.testing.assert_allclose(np.float32(a), b, atol=atol)
    for a, b in zip(
        jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads32), strict=True
    ):
        assert a.dtype == jnp.dtype(dtype)
        scale = max(float(jnp.max(jnp.abs(b))), 1e-3)
        np.testing.assert_allclose(np.float32(a), b, atol=grad_tol * scale)


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=DTYPE_IDS)
def test_recurrent_blocks_are_orthogonal_after_rounding(dtype):
    w_h = lj.lstm(16, dtype=dtype).init(jax.random.PRNGKey(2), INPUT_SIZE).w_h
    for block in jnp.split(jnp.asarray(w_h, jnp.float32), 4, axis=1):
        np.testing.assert_allclose(block.T @ block, np.eye(16), atol=3e-2)


@pytest.mark.parametrize("factory", [f for _, f in ALL_CELLS], ids=CELL_IDS)
def test_float32_inputs_promote_low_precision_params(factory):
    cell = factory(jnp.bfloat16)
    params = cell.init(jax.random.PRNGKey(0), INPUT_SIZE)
    xs = jnp.ones((B, T, INPUT_SIZE), jnp.float32)
    ys, carry = lj.unroll(cell, params, xs)
    assert ys.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(carry)} == {jnp.dtype(jnp.float32)}

"""Central finite differences of a scalar function along random directions (float64)."""

import jax
import jax.numpy as jnp
import numpy as np

FD_EPS = 1e-6
FD_RTOL = 1e-6  # central differences: error ~ eps^2 * f''' plus round-off ~ 1e-16 / eps


def assert_grad_matches_fd(f, args, seeds=(0, 1), rtol=FD_RTOL):
    """`jax.grad(f)(args)` along random directions equals (f(a + e d) - f(a - e d)) / 2e.

    `args` is any pytree of float64 arrays (None leaves allowed).
    """
    grads = jax.jit(jax.grad(f))(args)
    f = jax.jit(f)
    leaves, treedef = jax.tree_util.tree_flatten(args)
    for seed in seeds:
        keys = jax.random.split(jax.random.key(1000 + seed), len(leaves))
        direction = treedef.unflatten(
            [jax.random.normal(k, v.shape, v.dtype) for k, v in zip(keys, leaves, strict=True)]
        )
        plus = jax.tree_util.tree_map(lambda a, d: a + FD_EPS * d, args, direction)
        minus = jax.tree_util.tree_map(lambda a, d: a - FD_EPS * d, args, direction)
        fd = (f(plus) - f(minus)) / (2 * FD_EPS)
        analytic = sum(
            jnp.vdot(g, d)
            for g, d in zip(
                jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction), strict=True
            )
        )
        np.testing.assert_allclose(analytic, fd, rtol=rtol, atol=1e-9)

"""Every affine-scan algorithm against a plain Python loop (float64, 1e-12)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstmjax._affine_scan import affine_scan, max_plus_scan


def loop(a, b, h0, dense):
    h, out = np.asarray(h0), []
    for t in range(b.shape[0]):
        h = (np.einsum("...ij,...j->...i", a[t], h) if dense else a[t] * h) + b[t]
        out.append(h)
    return np.stack(out) if out else np.zeros(b.shape)


@pytest.mark.parametrize("T", [0, 1, 2, 7, 16, 50])
@pytest.mark.parametrize("algorithm", ["sequential", "associative", "blocked", "log"])
def test_diagonal(T, algorithm):
    k = jax.random.split(jax.random.PRNGKey(T), 3)
    a = jax.random.uniform(k[0], (T, 3, 4), jnp.float64, 0.1, 1.2)
    b = jax.random.uniform(k[1], (T, 3, 4), jnp.float64)
    h0 = jax.random.uniform(k[2], (3, 4), jnp.float64)  # positive: the log form applies
    np.testing.assert_allclose(affine_scan(a, b, h0, algorithm), loop(a, b, h0, False), rtol=1e-12)


@pytest.mark.parametrize("T", [1, 7, 50])
@pytest.mark.parametrize("algorithm", ["sequential", "associative", "blocked"])
def test_dense(T, algorithm):
    k = jax.random.split(jax.random.PRNGKey(T), 3)
    a = 0.4 * jax.random.normal(k[0], (T, 2, 4, 4), jnp.float64)
    b = jax.random.normal(k[1], (T, 2, 4), jnp.float64)
    h0 = jax.random.normal(k[2], (2, 4), jnp.float64)
    np.testing.assert_allclose(
        affine_scan(a, b, h0, algorithm), loop(a, b, h0, True), rtol=1e-12, atol=1e-13
    )


def test_gradients_of_the_blocked_scan_equal_the_sequential_ones():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    a = jax.random.uniform(k[0], (37, 2, 3), jnp.float64, 0.2, 1.0)
    b = jax.random.normal(k[1], (37, 2, 3), jnp.float64)
    h0 = jax.random.normal(k[2], (2, 3), jnp.float64)
    grads = [
        jax.grad(lambda *x, al=al: jnp.sum(jnp.sin(affine_scan(*x, al))), argnums=(0, 1, 2))(
            a, b, h0
        )
        for al in ("sequential", "blocked", "associative")
    ]
    for g in grads[1:]:
        for x, y in zip(g, grads[0], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13)


def test_unknown_algorithm_and_dense_log_are_refused():
    a, b = jnp.ones((2, 1, 3, 3)), jnp.ones((2, 1, 3))
    with pytest.raises(ValueError, match="diagonal"):
        affine_scan(a, b, b[0], "log")
    with pytest.raises(ValueError, match="must be one of"):
        affine_scan(b, b, b[0], "fast")


def max_plus_loop(alpha, beta, m0):
    m, out = np.asarray(m0), []
    for t in range(beta.shape[0]):
        m = np.maximum(m + alpha[t], beta[t])
        out.append(m)
    return np.stack(out) if out else np.zeros(beta.shape)


@pytest.mark.parametrize("T", [0, 1, 7, 50])
@pytest.mark.parametrize("algorithm", ["sequential", "associative", "blocked"])
def test_max_plus(T, algorithm):
    # m_t = max(m_{t-1} + alpha_t, beta_t), with the masked steps' -inf entries: a step
    # that forgets m (alpha = -inf, a reset) and one that only adds (beta = -inf).
    k = jax.random.split(jax.random.PRNGKey(T), 3)
    alpha = jax.random.uniform(k[0], (T, 3, 2), jnp.float64, -1.0, 0.0)
    beta = jax.random.normal(k[1], (T, 3, 2), jnp.float64)
    if T > 3:
        alpha, beta = alpha.at[2, 0].set(-jnp.inf), beta.at[3, 1].set(-jnp.inf)
    m0 = jax.random.normal(k[2], (3, 2), jnp.float64)
    got = max_plus_scan(alpha, beta, m0, algorithm)
    np.testing.assert_allclose(got, max_plus_loop(alpha, beta, m0), rtol=1e-12, atol=1e-14)
    if T:
        grad = jax.grad(lambda b: jnp.sum(jnp.sin(max_plus_scan(alpha, b, m0, algorithm))))(beta)
        want = jax.grad(lambda b: jnp.sum(jnp.sin(max_plus_scan(alpha, b, m0, "sequential"))))(beta)
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-14)


def test_max_plus_refuses_the_log_algorithm():
    with pytest.raises(ValueError, match="max-plus scan algorithm must be"):
        max_plus_scan(jnp.zeros((2, 1)), jnp.zeros((2, 1)), jnp.zeros(1), "log")

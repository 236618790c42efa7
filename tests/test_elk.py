"""ELK's damped step against the least-squares problem it solves (float64, 1e-10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax._elk import damped_step


def least_squares(a, b, g, h0, lam):
    """argmin_h sum_t (h_t - a_t h_{t-1} - b_t)^2 + lam sum_t (h_t - g_t)^2, one scalar chain."""
    T = len(b)
    D = np.eye(T) - np.diag(a[1:], -1)  # rows: h_t - a_t h_{t-1}
    rhs = b.copy()
    rhs[0] += a[0] * h0
    A = np.vstack([D, np.sqrt(lam) * np.eye(T)])
    return np.linalg.lstsq(A, np.concatenate([rhs, np.sqrt(lam) * g]), rcond=None)[0]


@pytest.mark.parametrize("T", [1, 2, 40])
@pytest.mark.parametrize("algorithm", ["sequential", "associative", "blocked"])
@pytest.mark.parametrize("lam", [0.0, 0.01, 3.0])
def test_damped_step_is_the_least_squares_minimiser(T, algorithm, lam):
    k = jax.random.split(jax.random.PRNGKey(T), 4)
    a = jax.random.uniform(k[0], (T, 2, 3), jnp.float64, -1.8, 1.8)  # gains above 1 too
    b = jax.random.normal(k[1], (T, 2, 3), jnp.float64)
    g = jax.random.normal(k[2], (T, 2, 3), jnp.float64)
    h0 = jax.random.normal(k[3], (2, 3), jnp.float64)
    got = np.asarray(damped_step(a, b, g, h0, lam, algorithm))
    for i in range(2):
        for j in range(3):
            want = least_squares(*(np.asarray(v[:, i, j]) for v in (a, b, g)), float(h0[i, j]), lam)
            np.testing.assert_allclose(got[:, i, j], want, rtol=1e-9, atol=1e-10)


def test_associative_variances_stay_finite_over_long_sequences():
    # 1,000 steps of gains above 1 in float32 (1.5^1000 overflows): the normalised 2x2 products
    # must neither overflow nor lose the variances the sequential scan gives.
    a = jnp.full((1_000, 1, 4), 1.5, jnp.float32).at[::7].set(0.2)
    b, g = jnp.zeros_like(a), jnp.ones_like(a)
    h0 = jnp.zeros((1, 4), jnp.float32)
    seq = damped_step(a, b, g, h0, 0.01, "sequential")
    par = damped_step(a, b, g, h0, 0.01, "associative")
    assert bool(jnp.all(jnp.isfinite(par)))
    np.testing.assert_allclose(par, seq, rtol=2e-4, atol=2e-5)


def test_the_log_form_is_refused_for_the_solvers():
    for solver in (lj.ELK, lj.Newton, lj.QuasiNewton):
        with pytest.raises(ValueError, match=r'algorithm="log" is for lj\.Affine only'):
            solver(algorithm="log")

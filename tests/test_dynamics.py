"""Lyapunov spectra and fixed points (`lstmjax.dynamics`) against closed forms.

References, each independent of the QR recursion under test:
  * linear maps h -> h A: the exponents are log |eigenvalues of A| (diagonal,
    orthogonally rotated, a scaled rotation with a complex pair);
  * the sum of all exponents is the mean of log |det J_t| along the
    trajectory (J_t formed with `jax.jacrev`, det by `slogdet`): exact at any T;
  * the Lorenz system with RK4: (0.906, 0, -14.57), the sum -(sigma + 1 + beta);
  * k = 1 from dL/d carry_{T-1} is backpropagation: it equals
    `diagnostics.carry_grad_norms` (a `jax.grad` of the whole loss);
  * fixed points of an affine map (a linear solve) and of h -> tanh(w h)
    (bisection), with the stability of each.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax import diagnostics, dynamics, tasks

IDENTITY = lambda z: z  # noqa: E731


def linear_cell(w_h: np.ndarray, bias=None):
    """h_t = x_t w_x + h_{t-1} w_h + b as an identity-activation RNN, float64."""
    D = w_h.shape[0]
    cell = lj.rnn(D, activation=IDENTITY, dtype=jnp.float64)
    params = lj.RNNParams(
        w_x=jnp.zeros((1, D)),
        w_h=jnp.asarray(w_h, jnp.float64),
        b=jnp.zeros(D) if bias is None else jnp.asarray(bias, jnp.float64),
    )
    return cell, params


def random_orthogonal(key, n):
    return np.linalg.qr(np.asarray(jax.random.normal(key, (n, n), jnp.float64)))[0]


def test_diagonal_and_rotated_linear_maps():
    a = np.array([1.3, 0.9, -0.5, 0.2, 0.05])
    expected = np.sort(np.log(np.abs(a)))[::-1]
    R = random_orthogonal(jax.random.PRNGKey(3), 5)
    xs = jnp.zeros((3, 300, 1))
    h0 = jax.random.normal(jax.random.PRNGKey(4), (3, 5), jnp.float64)
    for w_h in (np.diag(a), R @ np.diag(a) @ R.T):
        cell, params = linear_cell(w_h)
        spec = dynamics.lyapunov_spectrum(cell, params, xs, h0, warmup=100)
        np.testing.assert_allclose(spec.exponents, np.tile(expected, (3, 1)), atol=1e-8, rtol=0)
        top = dynamics.lyapunov_spectrum(cell, params, xs, h0, k=2, warmup=100)
        np.testing.assert_allclose(top.mean, expected[:2], atol=1e-8, rtol=0)
        assert top.running.shape == (3, 100, 2)


def test_complex_pair_and_non_normal_map():
    # A scaled rotation (eigenvalues 0.8 e^{+-i 0.7}) beside 1.1: exponents
    # log 1.1 and log 0.8 twice (the rotation stretches every direction alike).
    c, s = np.cos(0.7), np.sin(0.7)
    w = np.zeros((3, 3))
    w[:2, :2] = 0.8 * np.array([[c, -s], [s, c]])
    w[2, 2] = 1.1
    cell, params = linear_cell(w)
    xs = jnp.zeros((1, 800, 1))
    spec = dynamics.lyapunov_spectrum(cell, params, xs, warmup=300)
    expected = np.log([1.1, 0.8, 0.8])
    np.testing.assert_allclose(spec.exponents[0], expected, atol=1e-8, rtol=0)
    # Non-normal coupling leaves the eigenvalues and the top exponent alone.
    w[2, 0] = 3.0
    cell, params = linear_cell(w)
    top = dynamics.lyapunov_spectrum(cell, params, xs, k=1, warmup=300)
    np.testing.assert_allclose(top.exponents[0], expected[:1], atol=1e-8, rtol=0)


@pytest.mark.parametrize("make", [lambda: lj.lstm(4), lambda: lj.gru(4), lambda: lj.rnn(5)])
def test_sum_of_exponents_is_mean_log_det(make):
    cell = make()
    params = jax.tree_util.tree_map(
        lambda w: w.astype(jnp.float64), cell.init(jax.random.PRNGKey(0), 3)
    )
    params = jax.tree_util.tree_map(lambda w: 1.5 * w, params)
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 40, 3), jnp.float64)
    warmup = 5
    spec = dynamics.lyapunov_spectrum(cell, params, xs, warmup=warmup)
    # Independent: every Jacobian in full (jacrev of the cell's own step on the
    # carry's fields, concatenated), its log |det| by slogdet.
    carry0 = jax.tree_util.tree_map(lambda c: c.astype(jnp.float64), cell.initial_carry((2,)))

    def record(carry, x):
        return cell.step(params, carry, x)[0], carry

    _, before = jax.lax.scan(record, carry0, jnp.swapaxes(xs, 0, 1))  # leaves [T, B, D_i]

    def jac(c, x):  # one example: d (new carry fields) / d (carry fields), [D, D]
        blocks = jax.jacrev(lambda c: cell.step(params, c, x)[0])(c)
        rows = [jnp.concatenate(jax.tree_util.tree_leaves(r), -1) for r in _rows(blocks, c)]
        return jnp.concatenate(rows, 0)

    jacs = jax.vmap(jax.vmap(jac))(before, jnp.swapaxes(xs, 0, 1))
    logdets = np.linalg.slogdet(np.asarray(jacs))[1].T  # [B, T]
    mean_logdet = np.mean(logdets[:, warmup : 40 - warmup], axis=1)
    np.testing.assert_allclose(np.sum(spec.exponents, axis=1), mean_logdet, atol=1e-10, rtol=0)


def _rows(blocks, carry):
    """Jacobian blocks d new_field / d old_field -> per new field, the blocks in carry order."""
    if not hasattr(carry, "_fields"):
        return [[blocks]]
    return [list(getattr(blocks, f)) for f in carry._fields]


def lorenz_map(dt):
    f = tasks.lorenz()
    return dynamics.map_cell(lambda y: tasks.rk4_step(f, 0.0, y, dt), 3, name="lorenz")


def test_lorenz_spectrum():
    dt = 0.01
    y0 = jnp.asarray([[1.0, 1.0, 20.0], [-3.0, 2.0, 30.0]])
    spec = dynamics.lyapunov_spectrum(
        lorenz_map(dt), (), jnp.zeros((2, 20_000, 1)), y0, warmup=1000
    )
    rates = np.asarray(spec.mean) / dt
    # Within the anchors' tolerance (0.906 +- 0.05, 0 +- 0.02, -14.57 +- 0.1) after
    # 180 time units. The flow contracts volume at exactly sigma + 1 + beta; the
    # RK4 map's det differs from exp(-13.67 dt) by its truncation error (1e-4 here).
    assert abs(rates[0] - 0.906) < 0.05 and abs(rates[1]) < 0.02, rates
    assert abs(rates[2] + 14.572) < 0.1, rates
    assert np.sum(rates) == pytest.approx(-(10 + 1 + 8 / 3), abs=1e-3)


@pytest.mark.parametrize("make", [lambda: lj.lstm(6), lambda: lj.gru(6)])
def test_one_vector_backward_is_backpropagation(make):
    # k = 1 from u = dL/d carry_{T-1} reproduces carry_grad_norms (jax.grad of the loss).
    cell = make()
    params = jax.tree_util.tree_map(
        lambda w: w.astype(jnp.float64), cell.init(jax.random.PRNGKey(2), 3)
    )
    xs = jax.random.normal(jax.random.PRNGKey(3), (2, 30, 3), jnp.float64)
    readout = jax.random.normal(jax.random.PRNGKey(4), (6,), jnp.float64)
    norms = diagnostics.carry_grad_norms(
        cell, params, xs, lambda ys: jnp.square(ys[:, -1] @ readout)
    )
    ys, last = lj.unroll(cell, params, xs)
    g_h = 2 * (ys[:, -1] @ readout)[:, None] * readout[None, :]  # dL/dh_{T-1}
    zeros = [jnp.zeros_like(leaf) for leaf in jax.tree_util.tree_leaves(last)[1:]]
    u = jnp.concatenate([g_h, *zeros], axis=-1)[:, :, None]
    prods = diagnostics.jacobian_products(cell, params, xs, u)
    logs = np.asarray(prods.log_stretch[:, :, 0])
    cum = np.log(np.linalg.norm(u[:, :, 0], axis=1))[:, None] + np.concatenate(
        [np.cumsum(logs[:, ::-1], axis=1)[:, ::-1][:, 1:], np.zeros((2, 1))], axis=1
    )
    np.testing.assert_allclose(cum, np.log(np.asarray(norms.combined)), atol=1e-10, rtol=0)


def test_spectrum_jits_and_checks():
    cell, params = linear_cell(np.diag([0.5, 0.25]))
    xs = jnp.zeros((1, 200, 1))
    jitted = jax.jit(dynamics.lyapunov_spectrum, static_argnums=0, static_argnames=("k", "warmup"))
    np.testing.assert_allclose(
        jitted(cell, params, xs, warmup=60).mean, np.log([0.5, 0.25]), atol=1e-12
    )
    with pytest.raises(ValueError, match="k = 3"):
        dynamics.lyapunov_spectrum(cell, params, xs, k=3)
    with pytest.raises(ValueError, match="T > 2"):
        dynamics.lyapunov_spectrum(cell, params, xs, warmup=100)
    with pytest.raises(ValueError, match="batch, time, features"):
        dynamics.lyapunov_spectrum(cell, params, xs[0])


def test_fixed_points_of_an_affine_map():
    # h -> h A + c: one fixed point h* = c (I - A)^-1, eigenvalues those of A.
    A = np.array([[0.5, 0.2, 0.0], [0.0, -0.3, 0.1], [0.1, 0.0, 1.6]])
    c = np.array([0.3, -0.2, 0.5])
    cell, params = linear_cell(A, bias=c)
    starts = jax.random.normal(jax.random.PRNGKey(0), (6, 3), jnp.float64)
    fp = dynamics.fixed_points(cell, params, jnp.zeros(1), starts=starts)
    assert len(fp.kind) == 1 and fp.kind == ("saddle",)
    np.testing.assert_allclose(fp.points[0], c @ np.linalg.inv(np.eye(3) - A), atol=1e-5)
    eig = np.linalg.eigvals(A)
    np.testing.assert_allclose(np.abs(fp.eigenvalues[0]), np.sort(np.abs(eig))[::-1], atol=1e-9)


def test_fixed_points_of_a_tanh_map():
    # h -> tanh(2 h): 0 (slope 2, unstable) and +-h*, h* = tanh(2 h*) (slope 2 (1 - h*^2)).
    lo, hi = 0.5, 1.0
    for _ in range(80):  # bisection for h* (independent of the optimiser)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.tanh(2 * mid) > mid else (lo, mid)
    h_star = (lo + hi) / 2
    cell = lj.rnn(1, dtype=jnp.float64)
    params = lj.RNNParams(w_x=jnp.zeros((1, 1)), w_h=jnp.full((1, 1), 2.0), b=jnp.zeros(1))
    starts = jnp.linspace(-1.5, 1.5, 13)[:, None]
    fp = dynamics.fixed_points(cell, params, jnp.zeros(1), starts=starts)
    order = np.argsort(fp.points[:, 0])
    np.testing.assert_allclose(fp.points[order, 0], [-h_star, 0.0, h_star], atol=1e-5)
    assert [fp.kind[i] for i in order] == ["stable", "unstable", "stable"]
    slopes = np.real(fp.eigenvalues[order, 0])
    np.testing.assert_allclose(slopes, [2 * (1 - h_star**2), 2.0, 2 * (1 - h_star**2)], atol=1e-4)
    assert np.all(fp.speed < 1e-10)


def test_fixed_points_lstm_carry_structure():
    cell = lj.lstm(3)
    params = jax.tree_util.tree_map(
        lambda w: w.astype(jnp.float64), cell.init(jax.random.PRNGKey(0), 2)
    )
    starts = lj.LSTMCarry(
        h=jax.random.normal(jax.random.PRNGKey(1), (4, 3), jnp.float64),
        c=jax.random.normal(jax.random.PRNGKey(2), (4, 3), jnp.float64),
    )
    fp = dynamics.fixed_points(cell, params, jnp.zeros(2), starts=starts)
    assert len(fp.kind) >= 1 and isinstance(fp.carries, lj.LSTMCarry)
    for i in range(len(fp.kind)):  # each point is a fixed point of the cell's own step
        carry = lj.LSTMCarry(fp.carries.h[i], fp.carries.c[i])
        new, _ = cell.step(params, carry, jnp.zeros(2))
        np.testing.assert_allclose(np.concatenate(new), fp.points[i], atol=1e-4)
    with pytest.raises(ValueError, match="starts"):
        dynamics.fixed_points(cell, params, jnp.zeros(2), starts=(starts.h, starts.c, starts.c))
    with pytest.raises(ValueError, match="D = 6"):
        dynamics.fixed_points(cell, params, jnp.zeros(2), starts=starts.h)


def test_flip_flop_targets_hold_the_last_pulse():
    xs, ys = tasks.flip_flop(jax.random.PRNGKey(0), 4, 50, pulse_probability=0.1)
    xs, ys = np.asarray(xs), np.asarray(ys)
    assert set(np.unique(xs)) <= {-1.0, 0.0, 1.0} and np.all(xs[:, 0] != 0)
    expected = np.zeros_like(ys)
    for b in range(4):  # a plain loop over time, channel by channel
        for i in range(3):
            last = 0.0
            for t in range(50):
                last = xs[b, t, i] if xs[b, t, i] != 0 else last
                expected[b, t, i] = last
    np.testing.assert_array_equal(ys, expected)
    assert 0.05 < np.mean(xs[:, 1:] != 0) < 0.15  # pulse rate near 0.1
    with pytest.raises(ValueError, match="length"):
        tasks.flip_flop(jax.random.PRNGKey(0), 4, 0)

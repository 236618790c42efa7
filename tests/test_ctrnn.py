"""The continuous-time RNN `lj.ctrnn`.

Claims and tolerances (float64):
  * an Euler step is h + (dt / tau) (act(x W_x + h W_h + b) - h) (NumPy
    reference, per-unit tau, within 1e-12); with dt = tau it is the Elman
    RNN `lj.rnn` with the same weights (within 1e-12);
  * over a fixed horizon, halving dt cuts the error against a fine
    reference (RK4 at dt / 64) by 2x (Euler, ratio in [1.75, 2.25]) and by
    16x (RK4, ratio in [14, 18]);
  * `tau`, `dt` and `integrator` never change the parameters;
  * gradients equal central finite differences within 1e-6 relative;
  * `state_noise` with a key adds noise of that standard deviation (within
    5%, 5,000 draws) and nothing without one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from finite_differences import assert_grad_matches_fd

import lstmjax as lj

B, I, H = 3, 2, 4
TAU = np.array([0.5, 0.8, 1.0, 2.0])


def params_for(cell, seed=0):
    params = cell.init(jax.random.key(seed), I)
    return params._replace(
        b=0.3 * jax.random.normal(jax.random.key(seed + 9), (H,), params.b.dtype)
    )


def test_euler_step_matches_numpy():
    dt = 0.1
    cell = lj.ctrnn(H, tau=TAU, dt=dt, dtype=jnp.float64)
    params = params_for(cell)
    rng = np.random.default_rng(0)
    xs, h0 = rng.standard_normal((B, 5, I)), rng.standard_normal((B, H))
    ys, _ = lj.unroll(cell, params, jnp.asarray(xs), jnp.asarray(h0))
    p = {k: np.asarray(v) for k, v in params._asdict().items()}
    h, want = h0, []
    for t in range(5):
        h = h + dt / TAU * (np.tanh(xs[:, t] @ p["w_x"] + h @ p["w_h"] + p["b"]) - h)
        want.append(h)
    np.testing.assert_allclose(ys, np.stack(want, 1), rtol=1e-12, atol=1e-12)


def test_euler_with_dt_equal_tau_is_the_elman_rnn():
    cell = lj.ctrnn(H, tau=0.7, dt=0.7, dtype=jnp.float64)
    params = params_for(cell)
    xs = jax.random.normal(jax.random.key(1), (B, 6, I), jnp.float64)
    rnn = lj.rnn(H, dtype=jnp.float64)
    want, _ = lj.unroll(rnn, lj.RNNParams(*params), xs)
    np.testing.assert_allclose(lj.unroll(cell, params, xs)[0], want, rtol=1e-12, atol=1e-12)


def final_state(integrator, dt, horizon=2.0):
    """h(horizon) under a constant input, from a fixed h0 (float64)."""
    cell = lj.ctrnn(H, tau=TAU, dt=dt, integrator=integrator, dtype=jnp.float64)
    params = params_for(cell)
    params = params._replace(w_h=1.5 * params.w_h)  # a strongly coupled, nonlinear flow
    steps = round(horizon / dt)
    x = jnp.broadcast_to(jnp.array([0.7, -0.4]), (1, steps, I))
    h0 = jnp.array([[0.5, -0.9, 0.2, 0.8]])
    return lj.unroll(cell, params, x, h0)[1][0]


def test_convergence_orders():
    dts = (0.1, 0.05, 0.025)
    reference = final_state("rk4", dts[-1] / 64)
    for integrator, order in (("euler", 1), ("rk4", 4)):
        errors = [float(jnp.max(jnp.abs(final_state(integrator, dt) - reference))) for dt in dts]
        ratios = [errors[i] / errors[i + 1] for i in range(len(dts) - 1)]
        for r in ratios:  # 2**order, within 12.5%
            assert 0.875 * 2**order < r < 1.125 * 2**order, (integrator, errors, ratios)


def test_tau_dt_integrator_do_not_change_params():
    key = jax.random.key(5)
    want = lj.ctrnn(H).init(key, I)
    for options in (
        dict(tau=3.0, dt=0.01),
        dict(tau=TAU, dt=0.5, integrator="rk4"),
        dict(activation="softplus"),
    ):
        got = lj.ctrnn(H, **options).init(key, I)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("integrator", ["euler", "rk4"])
def test_gradients_match_finite_differences(integrator):
    cell = lj.ctrnn(H, tau=TAU, dt=0.2, integrator=integrator, dtype=jnp.float64)
    params = params_for(cell)
    xs = jax.random.normal(jax.random.key(1), (B, 7, I), jnp.float64)
    w = jax.random.normal(jax.random.key(2), (B, 7, H), jnp.float64)

    def loss(args):
        p, x = args
        return jnp.sum(w * lj.unroll(cell, p, x)[0])

    assert_grad_matches_fd(loss, (params, xs))


def test_state_noise_only_with_a_key():
    sigma = 0.05
    cell = lj.ctrnn(H, tau=TAU, dt=0.1)
    net = lj.recurrent(cell, state_noise=sigma)
    quiet = lj.recurrent(cell)
    params = net.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (1250, 1, I))  # one step: noise = difference
    o, _ = net.apply(params, xs, key=jax.random.key(2))
    o0, _ = quiet.apply(params, xs)
    np.testing.assert_array_equal(net.apply(params, xs, deterministic=True)[0], o0)
    noise = np.asarray(o - o0).ravel()
    assert abs(noise.std() / sigma - 1) < 0.05 and abs(noise.mean()) < 4 * sigma / np.sqrt(
        noise.size
    )

"""Layer-normalised LSTM and GRU (`layer_norm=True`), checked against NumPy references.

Claims and tolerances (float64 unless stated):
  * `lj.lstm(layer_norm=True)` (with and without peepholes, with a
    projection) and `lj.gru(layer_norm=True)` equal a NumPy loop over the
    equations of their docstrings (Ba, Kiros & Hinton 2016) within 1e-12,
    with random gains and biases so that every term is exercised;
  * LN makes the step invariant to a positive rescaling of W_x and of W_h
    (up to the eps in the variance: within 1e-4 for a factor 10);
  * gradients equal central finite differences within 1e-6 relative;
  * a key gives the same W_x, W_h, b with or without LN (LN only adds fields).
The LN-LSTM is not in `cell_zoo` (LN amplifies round-off by 1/std of what
it normalises: its float32 error reaches 1.1e-6, its bfloat16 gradients
exceed 5%), so the zoo's checks run on it here at these tolerances:
  * float32: unroll equals a Python loop over `step` (forward and reverse,
    with lengths: each sequence alone) and jit equals no jit, within 1e-5;
  * bfloat16 / float16: outputs within 3e-2 / 1e-2 of float32 (zoo: 3e-2 / 3e-3),
    gradients within 25% / 10% of their largest entry (the zoo: 5% / 0.5%).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from finite_differences import assert_grad_matches_fd

import lstmjax as lj

B, T, I, H = 3, 6, 4, 5
EPS = 1e-5


def np_ln(v, gain, bias=None):
    mu = v.mean(-1, keepdims=True)
    var = ((v - mu) ** 2).mean(-1, keepdims=True)
    out = (v - mu) / np.sqrt(var + EPS) * gain
    return out if bias is None else out + bias


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def np_ln_lstm(p, xs, h, c):
    ys = []
    for t in range(xs.shape[1]):
        z = np_ln(xs[:, t] @ p["w_x"], p["ln_gain_x"]) + np_ln(h @ p["w_h"], p["ln_gain_h"])
        zi, zf, zg, zo = np.split(z + p["b"], 4, axis=-1)
        if p["peephole"] is not None:
            zi, zf = zi + p["peephole"][0] * c, zf + p["peephole"][1] * c
        c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zg)
        if p["peephole"] is not None:
            zo = zo + p["peephole"][2] * c
        h = sigmoid(zo) * np.tanh(np_ln(c, p["ln_gain_c"], p["ln_bias_c"]))
        if p["w_proj"] is not None:
            h = h @ p["w_proj"]
        ys.append(h)
    return np.stack(ys, 1), h, c


def np_ln_gru(p, xs, h):
    ys = []
    for t in range(xs.shape[1]):
        ar, az, an = np.split(np_ln(xs[:, t] @ p["w_x"], p["ln_gain_x"]) + p["b"], 3, axis=-1)
        ur, uz, un = np.split(np_ln(h @ p["w_h"], p["ln_gain_h"]), 3, axis=-1)
        r, z = sigmoid(ar + ur), sigmoid(az + uz)
        n = np.tanh(an + r * (un + p["b_hn"]))
        h = z * h + (1 - z) * n
        ys.append(h)
    return np.stack(ys, 1), h


def randomised(cell, seed=0):
    """Params with every field (gains, biases) moved off its initial value."""
    params = cell.init(jax.random.key(seed), I)
    return jax.tree_util.tree_map(
        lambda v: v + 0.3 * jax.random.normal(jax.random.key(v.size + seed), v.shape, v.dtype),
        params,
    )


def as_numpy(params):
    return {k: None if v is None else np.asarray(v) for k, v in params._asdict().items()}


LSTM_OPTIONS = {
    "ln": dict(),
    "ln_peephole": dict(peephole=True),
    "ln_proj": dict(proj_size=3),
}


@pytest.mark.parametrize("options", list(LSTM_OPTIONS.values()), ids=list(LSTM_OPTIONS))
def test_ln_lstm_matches_numpy(options):
    cell = lj.lstm(H, layer_norm=True, dtype=jnp.float64, **options)
    params = randomised(cell)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, cell.output_size))
    c0 = rng.standard_normal((B, H))
    ys, carry = jax.jit(lambda p, x, c: lj.unroll(cell, p, x, c))(
        params, jnp.asarray(xs), lj.LSTMCarry(jnp.asarray(h0), jnp.asarray(c0))
    )
    ys_np, h_np, c_np = np_ln_lstm(as_numpy(params), xs, h0, c0)
    np.testing.assert_allclose(ys, ys_np, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(carry.h, h_np, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(carry.c, c_np, rtol=1e-12, atol=1e-12)


def test_ln_gru_matches_numpy():
    cell = lj.gru(H, layer_norm=True, dtype=jnp.float64)
    params = randomised(cell)
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, H))
    ys, h = jax.jit(lambda p, x, c: lj.unroll(cell, p, x, c))(
        params, jnp.asarray(xs), jnp.asarray(h0)
    )
    ys_np, h_np = np_ln_gru(as_numpy(params), xs, h0)
    np.testing.assert_allclose(ys, ys_np, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, h_np, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("factory", [lj.lstm, lj.gru], ids=["lstm", "gru"])
def test_invariant_to_rescaled_weights(factory):
    """LN(a v) = LN(v) for a > 0, so scaling W_x and W_h by 10 changes nothing (but eps)."""
    cell = factory(H, layer_norm=True, dtype=jnp.float64)
    params = randomised(cell)
    xs = jax.random.normal(jax.random.key(3), (B, T, I), jnp.float64)
    ys, _ = lj.unroll(cell, params, xs)
    scaled = params._replace(w_x=10.0 * params.w_x, w_h=10.0 * params.w_h)
    np.testing.assert_allclose(lj.unroll(cell, scaled, xs)[0], ys, atol=1e-4)
    # Without LN the same rescaling changes the outputs completely.
    plain = factory(H, dtype=jnp.float64)
    p = plain.init(jax.random.key(0), I)
    p10 = p._replace(w_x=10.0 * p.w_x, w_h=10.0 * p.w_h)
    assert np.abs(lj.unroll(plain, p10, xs)[0] - lj.unroll(plain, p, xs)[0]).max() > 0.1


FD_CELLS = {
    "lstm_ln": lambda: lj.lstm(H, layer_norm=True, dtype=jnp.float64),
    "lstm_peephole_ln": lambda: lj.lstm(H, peephole=True, layer_norm=True, dtype=jnp.float64),
    "gru_ln": lambda: lj.gru(H, layer_norm=True, dtype=jnp.float64),
}


@pytest.mark.parametrize("make", list(FD_CELLS.values()), ids=list(FD_CELLS))
def test_gradients_match_finite_differences(make):
    cell = make()
    params = randomised(cell)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    w = jax.random.normal(jax.random.key(2), (B, T, cell.output_size), jnp.float64)

    def loss(args):
        p, x = args
        ys, _ = lj.unroll(cell, p, x)
        return jnp.sum(w * ys)

    assert_grad_matches_fd(loss, (params, xs))


def test_ln_adds_fields_only():
    key = jax.random.key(4)
    plain = lj.lstm(H).init(key, I)
    ln = lj.lstm(H, layer_norm=True).init(key, I)
    for field in ("w_x", "w_h", "b"):
        np.testing.assert_array_equal(getattr(ln, field), getattr(plain, field))
    np.testing.assert_array_equal(ln.ln_gain_x, np.ones(4 * H))
    np.testing.assert_array_equal(ln.ln_bias_c, np.zeros(H))
    assert plain.ln_gain_x is None and plain.w_proj is None


LN_ZOO = {
    "lstm_ln": lambda dtype=jnp.float32: lj.lstm(5, layer_norm=True, dtype=dtype),
    "lstm_peephole_ln": lambda dtype=jnp.float32: lj.lstm(
        5, peephole=True, layer_norm=True, dtype=dtype
    ),
    "lstm_ln_proj": lambda dtype=jnp.float32: lj.lstm(5, layer_norm=True, proj_size=3, dtype=dtype),
}
F32 = dict(rtol=1e-5, atol=1e-5)


def python_loop(cell, params, xs):
    carry = cell.initial_carry((xs.shape[0],))
    ys = []
    for t in range(xs.shape[1]):
        carry, y = cell.step(params, carry, xs[:, t])
        ys.append(y)
    return jnp.stack(ys, 1), carry


@pytest.mark.parametrize("factory", list(LN_ZOO.values()), ids=list(LN_ZOO))
def test_ln_lstm_conformance_float32(factory):
    cell = factory()
    params = randomised(cell)
    xs = jax.random.normal(jax.random.key(5), (4, 7, I), jnp.float32)
    lengths = jnp.array([7, 3, 0, 5])
    want_ys, want_carry = python_loop(cell, params, xs)
    ys, carry = lj.unroll(cell, params, xs)
    np.testing.assert_allclose(ys, want_ys, **F32)
    for a, b in zip(carry, want_carry, strict=True):
        np.testing.assert_allclose(a, b, **F32)
    jit_ys, _ = jax.jit(lambda p, x: lj.unroll(cell, p, x))(params, xs)
    np.testing.assert_allclose(jit_ys, ys, **F32)
    rev, _ = lj.unroll(cell, params, xs, lengths=lengths, reverse=True)
    for b in range(4):
        n = int(lengths[b])
        assert not np.asarray(rev[b, n:]).any()
        if n:
            alone, _ = python_loop(cell, params, xs[b : b + 1, :n][:, ::-1])
            np.testing.assert_allclose(rev[b, :n], alone[0, ::-1], **F32)


@pytest.mark.parametrize(
    "dtype, out_tol, grad_tol",
    [(jnp.bfloat16, 3e-2, 0.25), (jnp.float16, 1e-2, 0.1)],
    ids=["bfloat16", "float16"],
)
# Peepholes start at zero: lstm_peephole_ln's outputs here would be lstm_ln's.
@pytest.mark.parametrize("name", ["lstm_ln", "lstm_ln_proj"])
def test_ln_lstm_low_precision(name, dtype, out_tol, grad_tol):
    factory = LN_ZOO[name]
    lengths = jnp.array([6, 4, 1])

    def run(cell, params, xs):
        def loss(p):
            ys, carry = lj.unroll(cell, p, xs, lengths=lengths)
            return sum(jnp.sum(jnp.sin(v.astype(jnp.float32))) for v in [ys, *carry])

        return lj.unroll(cell, params, xs, lengths=lengths)[0], jax.grad(loss)(params)

    cell = factory(dtype)
    params = cell.init(jax.random.PRNGKey(0), I)
    xs = jax.random.normal(jax.random.PRNGKey(1), (3, 6, I)).astype(dtype)
    ys, grads = run(cell, params, xs)
    up = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), (params, xs))
    ys32, grads32 = run(factory(jnp.float32), *up)
    assert ys.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(np.float32(ys), ys32, atol=out_tol)
    for a, b in zip(
        jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads32), strict=True
    ):
        assert a.dtype == jnp.dtype(dtype)
        scale = max(float(jnp.max(jnp.abs(b))), 1e-3)
        np.testing.assert_allclose(np.float32(a), b, atol=grad_tol * scale)

"""sLSTM and mLSTM (Beck et al. 2024): the paper's equations in NumPy, the stabiliser, the
parallel pass, finite differences, and the instruments that read a cell's carry.

References (float64, plain Python loops over time, written from the paper's
equations and independent of the library's layout code): `slstm_reference`
builds the block-diagonal recurrent matrix in full; `mlstm_reference` keeps
each head's d x d memory as a matrix. Each runs stabilised (the paper's
log-space stabiliser m) or raw (i_t = exp(a_i), f_t, states unscaled).
The generic suites (conformance, lengths, masks, resets, solvers, forward
mode, low precision, layers, diagnostics) run both cells from `cell_zoo`.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from finite_differences import assert_grad_matches_fd
from hostile import assert_clear

import lstmjax as lj
from lstmjax import dynamics, train
from lstmjax.checkpoint import Checkpointer

I, H, B, T = 3, 4, 2, 9
KEY = jax.random.key(0)


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def log_sig(v):
    return -np.logaddexp(0.0, -v)


def slstm_reference(p, xs, forget_gate="sigmoid", stabilised=True, dtype=np.float64):
    """`(ys [B, T, H], (h, c, n, m))` of the sLSTM, from the equations, in `dtype`."""
    w_x, w_h, b = (np.asarray(a, dtype) for a in p)
    xs = np.asarray(xs, dtype)
    heads, d = w_h.shape[:2]
    width = heads * d
    R = np.zeros((width, 4 * width), dtype)  # block-diagonal: head k reads only its own units
    for k in range(heads):
        for g in range(4):
            R[k * d : (k + 1) * d, g * width + k * d : g * width + (k + 1) * d] = w_h[k][
                :, g * d : (g + 1) * d
            ]
    h = c = n = m = np.zeros((xs.shape[0], width), dtype)
    ys = []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ w_x + h @ R + b
        a_i, a_f, a_z, a_o = np.split(a, 4, axis=1)
        log_f = log_sig(a_f) if forget_gate == "sigmoid" else a_f
        if stabilised:
            empty = n == 0
            m_new = np.where(empty, a_i, np.maximum(log_f + m, a_i))
            i_gate = np.exp(a_i - m_new)
            f_gate = np.where(empty, 0, np.exp(np.minimum(log_f + m - m_new, 0))).astype(dtype)
            m = m_new
        else:
            i_gate, f_gate = np.exp(a_i), np.exp(log_f)
        c = f_gate * c + i_gate * np.tanh(a_z)
        n = f_gate * n + i_gate
        h = sig(a_o) * c / n
        ys.append(h)
    return np.stack(ys, 1), (h, c, n, m)


def mlstm_reference(p, xs, heads, forget_gate="sigmoid", stabilised=True, dtype=np.float64):
    """`(ys [B, T, H], (h, C [B, S, d, d], n [B, S, d], m [B, S]))` of the mLSTM, in `dtype`."""
    w_x, b = np.asarray(p.w_x, dtype), np.asarray(p.b, dtype)
    xs = np.asarray(xs, dtype)
    width = (w_x.shape[1] - 2 * heads) // 4
    d = width // heads
    batch = xs.shape[0]
    C = np.zeros((batch, heads, d, d), dtype)
    n = np.zeros((batch, heads, d), dtype)
    m = np.zeros((batch, heads), dtype)
    ys = []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ w_x + b
        q, k, v, o = (a[:, j * width : (j + 1) * width].reshape(batch, heads, d) for j in range(4))
        k = k / dtype(math.sqrt(d))
        a_i, a_f = a[:, 4 * width : 4 * width + heads], a[:, 4 * width + heads :]
        log_f = log_sig(a_f) if forget_gate == "sigmoid" else a_f
        if stabilised:
            m_new = np.maximum(log_f + m, a_i)
            i_gate, f_gate = np.exp(a_i - m_new), np.exp(log_f + m - m_new)
            m = m_new
            floor = np.exp(-m)
        else:
            i_gate, f_gate, floor = np.exp(a_i), np.exp(log_f), np.ones_like(a_i)
        h = np.zeros((batch, heads, d), dtype)
        for bb in range(batch):
            for s in range(heads):
                C[bb, s] = f_gate[bb, s] * C[bb, s] + i_gate[bb, s] * np.outer(v[bb, s], k[bb, s])
                n[bb, s] = f_gate[bb, s] * n[bb, s] + i_gate[bb, s] * k[bb, s]
                denominator = max(abs(n[bb, s] @ q[bb, s]), floor[bb, s])
                h[bb, s] = C[bb, s] @ q[bb, s] / denominator
        h = sig(o.reshape(batch, width)) * h.reshape(batch, width)
        ys.append(h)
    return np.stack(ys, 1), (h, C, n, m)


def build(name, heads=2, forget_gate="sigmoid", dtype=jnp.float64, hidden=H):
    factory = lj.slstm if name == "slstm" else lj.mlstm
    cell = factory(
        hidden,
        num_heads=heads,
        forget_gate=forget_gate,
        dtype=dtype,
        bias_init=jax.nn.initializers.normal(1.0),
    )
    return cell, cell.init(KEY, I)


def reference(name, params, xs, heads, forget_gate="sigmoid", stabilised=True, dtype=np.float64):
    if name == "slstm":
        return slstm_reference(params, xs, forget_gate, stabilised, dtype)
    return mlstm_reference(params, xs, heads, forget_gate, stabilised, dtype)


XS = 2.0 * jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
VARIANTS = [
    ("slstm", 1, "sigmoid"),
    ("slstm", 2, "exp"),
    ("mlstm", 1, "exp"),
    ("mlstm", 2, "sigmoid"),
]


@pytest.mark.parametrize("name, heads, forget_gate", VARIANTS)
def test_every_method_equals_the_paper_equations(name, heads, forget_gate):
    # The scan, the default method (mLSTM: the parallel pass) and every affine-scan
    # algorithm against the NumPy loop, float64; final carry in the library's layout.
    cell, params = build(name, heads, forget_gate)
    want_ys, (h, c, n, m) = reference(name, params, np.asarray(XS), heads, forget_gate)
    methods = ["scan", "auto"]
    if name == "mlstm":
        methods += [lj.Affine(algorithm=a) for a in ("sequential", "associative", "blocked")]
    for method in methods:
        ys, carry = lj.unroll(cell, params, XS, method=method)
        np.testing.assert_allclose(ys, want_ys, rtol=1e-12, atol=1e-14)
        want_carry = (h, c.reshape(B, -1), n.reshape(B, -1), m)
        for got, want in zip(carry, want_carry, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_the_stabiliser_changes_no_output(name):
    # Raw recurrence (i = exp(a_i), states unscaled) and stabilised one give the same
    # h, in float64 where the raw one is far from overflow; the stabiliser is not
    # idle here (|m| reaches several units), so the two carry different states.
    cell, params = build(name, heads=2, forget_gate="exp")
    xs = np.asarray(XS)
    raw, raw_carry = reference(name, params, xs, 2, "exp", stabilised=False)
    stabilised, carry = reference(name, params, xs, 2, "exp", stabilised=True)
    assert np.all(np.isfinite(raw))
    assert np.max(np.abs(carry[3])) > 3.0
    assert not np.allclose(raw_carry[1], carry[1])
    np.testing.assert_allclose(stabilised, raw, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(lj.unroll(cell, params, XS)[0], raw, rtol=1e-11, atol=1e-13)


LONG = 10_000


def overflow_prone(name, dtype):
    """A cell whose input gate opens at about exp(84) at every step and whose forget gate
    barely forgets (f = sigmoid(12)): the raw memories grow by about e^84 per step.

    The mLSTM's queries and keys are kept positive (bias 1), so that its readout
    C q / n^T q is a weighted average of the values, not a ratio whose denominator
    cancels (which would amplify any rounding, stabilised or not)."""
    cell = (lj.slstm if name == "slstm" else lj.mlstm)(H, num_heads=2, dtype=dtype)
    params = jax.tree.map(lambda a: 0.1 * a, cell.init(KEY, I))
    S = H if name == "slstm" else 2
    start = 0 if name == "slstm" else 4 * H  # where the i and f blocks begin in b
    b = params.b.at[start : start + S].set(84.0).at[start + S : start + 2 * S].set(12.0)
    if name == "mlstm":
        b = b.at[: 2 * H].set(1.0)  # blocks q, k
    return cell, params._replace(b=b)


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_float32_at_ten_thousand_steps_is_finite_and_equals_float64(name):
    xs = jax.random.normal(jax.random.key(2), (1, LONG, I), jnp.float32)
    cell32, p32 = overflow_prone(name, jnp.float32)
    cell64 = (lj.slstm if name == "slstm" else lj.mlstm)(H, num_heads=2, dtype=jnp.float64)
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), p32)  # the same values
    want, _ = lj.unroll(cell64, p64, xs.astype(jnp.float64))
    for method in ("auto", "scan"):
        ys, carry = lj.unroll(cell32, p32, xs, method=method)
        chex.assert_tree_all_finite((ys, carry))
        np.testing.assert_allclose(ys, want, rtol=1e-4, atol=2e-5)  # |h| <= 0.07
    # The raw recurrence (no stabiliser) in float32: right at first, then its normaliser
    # overflows (after about 100 steps) and its outputs are wrong (0, inf/inf or NaN).
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        raw, (_, _, n, _) = reference(
            name, p32, np.asarray(xs), 2, stabilised=False, dtype=np.float32
        )
    np.testing.assert_allclose(raw[:, :10], want[:, :10], rtol=1e-4, atol=1e-6)
    assert np.any(np.isinf(n))
    wrong = ~np.isclose(raw[:, -100:], want[:, -100:], rtol=1e-2, atol=1e-3)
    assert np.mean(wrong) > 0.5


# --- the mLSTM's parallel pass against its own scan ------------------------------------

TP = 13  # 3 chunks of 4 and a tail of 1
RESETS = jnp.zeros((3, TP), bool).at[0, 5].set(True).at[2, 1].set(True)
LENGTHS = jnp.array([TP, 7, 0])
MASK = jnp.ones((3, TP), bool).at[1, 2].set(False)


def parallel_case():
    cell, params = build("mlstm", heads=2)
    xs = 2.0 * jax.random.normal(jax.random.key(3), (3, TP, I), jnp.float64)
    carry = cell.initial_carry((3,))
    carry = jax.tree.map(lambda c: 0.3 + 0.1 * jnp.arange(c.size).reshape(c.shape), carry)
    return cell, params, xs, carry


def loss_of(cell, method, reverse):
    def loss(params, xs, carry):
        kw = dict(lengths=LENGTHS, resets=RESETS, mask=MASK, reverse=reverse, method=method)
        ys, last = lj.unroll(cell, params, xs, carry, **kw)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.cos(leaf)) for leaf in jax.tree.leaves(last))

    return loss


@pytest.mark.parametrize(
    "method, reverse",
    [(lj.Affine(), False), (lj.Affine(chunk=4), True)],
    ids=["auto-forward", "chunks_of_4-reverse"],
)
def test_parallel_pass_and_its_derivatives_equal_the_scan(method, reverse):
    # float64, with lengths (one empty sequence), a mask hole, resets, a nonzero
    # initial carry and reverse: outputs, final carry, gradients and a jvp, to 1e-10.
    cell, params, xs, carry = parallel_case()
    got, want = loss_of(cell, method, reverse), loss_of(cell, lj.Scan(), reverse)
    kw = dict(lengths=LENGTHS, resets=RESETS, mask=MASK, reverse=reverse)
    a = lj.unroll(cell, params, xs, carry, method=method, **kw)
    b = lj.unroll(cell, params, xs, carry, method=lj.Scan(), **kw)
    chex.assert_trees_all_close(a, b, rtol=1e-10, atol=1e-12)
    g_got = jax.grad(got, argnums=(0, 1, 2))(params, xs, carry)
    g_want = jax.grad(want, argnums=(0, 1, 2))(params, xs, carry)
    chex.assert_trees_all_close(g_got, g_want, rtol=1e-10, atol=1e-12)
    tangent = jax.tree.map(lambda v: 0.1 * jnp.ones_like(v), params)
    jvp_got = jax.jvp(lambda p: got(p, xs, carry), (params,), (tangent,))[1]
    jvp_want = jax.jvp(lambda p: want(p, xs, carry), (params,), (tangent,))[1]
    np.testing.assert_allclose(jvp_got, jvp_want, rtol=1e-10)


@pytest.mark.parametrize("algorithm", ["associative", "blocked"])
def test_the_depth_log_t_and_blocked_passes_equal_the_scan_with_every_mask(algorithm):
    # Values only: their gradients agreed with the scan's to 1e-13 when measured, but
    # compiling the reverse pass of an associative scan over the memories took minutes.
    cell, params, xs, carry = parallel_case()
    for reverse in (False, True):
        kw = dict(lengths=LENGTHS, resets=RESETS, mask=MASK, reverse=reverse)
        a = lj.unroll(cell, params, xs, carry, method=lj.Affine(algorithm, chunk=4), **kw)
        b = lj.unroll(cell, params, xs, carry, method=lj.Scan(), **kw)
        chex.assert_trees_all_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_default_method_is_the_parallel_pass_for_the_mlstm_only():
    from lstmjax import _methods

    # On CPU the chunk holds 32,768 carry floats per sequence: 64 + 1024 + 64 + 4 here.
    want = lj.Affine(chunk=32768 // 1156, algorithm="sequential")
    assert _methods.resolve("auto", lj.mlstm(64, num_heads=4), "cpu") == want
    assert _methods.resolve(lj.Affine(chunk=7), lj.mlstm(64), "cpu").chunk == 7
    assert _methods.resolve("auto", lj.min_gru(64), "cpu").chunk == 512
    assert _methods.resolve("auto", lj.slstm(4), "cpu") == lj.Scan().resolve("cpu")
    assert lj.mlstm(4).stabilised_linear and not lj.mlstm(4).linear_in_carry
    assert not lj.slstm(4).stabilised_linear and not lj.slstm(4).linear_in_carry


# --- the parallel-in-time solvers -------------------------------------------------------


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_every_solver_equals_the_scan_and_its_gradient_equals_bptt(name):
    # float64, with lengths, a reset and reverse. sLSTM: its step is nonlinear in the
    # carry (and its empty-memory rule switches at n = 0), which the solvers meet from a
    # guess of zeros; mLSTM: the max in its stabiliser.
    cell, params = build(name, heads=2)
    kw = dict(lengths=jnp.array([T, 6]), resets=jnp.zeros((B, T), bool).at[0, 4].set(True))
    want = lj.unroll(cell, params, XS, method="scan", reverse=True, **kw)
    for method in ("newton", "quasi_newton", "elk"):
        got = lj.unroll(cell, params, XS, method=method, reverse=True, **kw)
        chex.assert_trees_all_close(got, want, rtol=1e-9, atol=1e-10)

    def loss(p, method):
        ys, last = lj.unroll(cell, p, XS, method=method, reverse=True, **kw)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.tanh(last.h))

    # atol: the gradient at the input gate's bias is 0 up to round-off (exp(b_i) is a
    # factor of both c and n, and cancels in h = o c / n).
    grads = [jax.grad(loss)(params, method) for method in ("quasi_newton", "scan")]
    chex.assert_trees_all_close(*grads, rtol=1e-8, atol=1e-12)


# --- finite differences ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_gradient_equals_finite_differences(name):
    # Through the default method (sLSTM: the scan; mLSTM: the parallel pass), with
    # lengths, with respect to the parameters and the inputs.
    cell, params = build(name, heads=2, forget_gate="exp")
    lengths = jnp.array([T, 5])

    def loss(args):
        p, xs = args
        ys, last = lj.unroll(cell, p, xs, lengths=lengths)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.tanh(last.h))

    assert_grad_matches_fd(loss, (params, XS))
    # Forward mode along one direction equals reverse mode's directional derivative.
    direction = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size).reshape(a.shape)), (params, XS))
    forward = jax.jvp(loss, ((params, XS),), (direction,))[1]
    grads = jax.grad(loss)((params, XS))
    reverse = sum(
        jnp.vdot(g, v)
        for g, v in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    )
    np.testing.assert_allclose(forward, reverse, rtol=1e-12)


# --- the instruments that read a cell ---------------------------------------------------


def constant_input_cell(name):
    """Recurrent weights zero (sLSTM) and a constant input: the memories forget by f per
    step (per unit or head), and the input gate beats the forget gate at every step.

    forget_bias -1 keeps f below about 0.8: the fixed point's m = a_i then lies |log f|
    > 0.2 below the kink of m -> max(log f + m, a_i), past which the speed q is flat in
    m (L-BFGS started 0.3 away stalls there; from 0.05 it converges)."""
    factory = lj.slstm if name == "slstm" else lj.mlstm
    cell = factory(
        H,
        num_heads=2,
        forget_bias=-1.0,
        dtype=jnp.float64,
        bias_init=jax.nn.initializers.normal(1.0),
    )
    params = cell.init(KEY, I)
    if name == "slstm":
        params = params._replace(w_h=jnp.zeros_like(params.w_h))
    x = jnp.array([0.5, -1.0, 0.25])
    px = np.asarray(cell.project(params, x))
    if name == "slstm":
        f = sig(px[H : 2 * H])
    else:
        f = sig(px[4 * H + 2 :])
    return cell, params, x, px, f


def dynamics_leaves(cell, flat):
    """A flat `[S, D]` array split into the cell's carry leaves `[S, D_i]`."""
    template = cell.initial_carry(())
    leaves, treedef = jax.tree.flatten(template)
    cuts = np.cumsum([leaf.shape[-1] for leaf in leaves])[:-1]
    return jax.tree.unflatten(treedef, jnp.split(flat, cuts, axis=-1))


@pytest.mark.integration  # 200 L-BFGS steps per start: 7-9 s each to compile and run
@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_fixed_point_and_its_stability_are_the_closed_form(name):
    # With a constant input and no memory mixing, m* = a_i, f' = f, i' = 1, so
    # c* = z / (1 - f), n* = 1 / (1 - f) (sLSTM), C* = v k^T / (1 - f), n* = k / (1 - f)
    # (mLSTM); the Jacobian is triangular with eigenvalues f (the memories) and 0.
    cell, params, x, px, f = constant_input_cell(name)
    # Starts: states visited on the input (after 100 steps), memories and h perturbed.
    _, visited = lj.unroll(cell, params, jnp.broadcast_to(x, (4, 100, I)))
    noise = jax.random.normal(jax.random.key(4), (4, dynamics.carry_size(cell)), jnp.float64)
    starts = jax.tree.map(lambda a, e: a + 0.05 * e, visited, dynamics_leaves(cell, noise))
    found = dynamics.fixed_points(cell, params, x, starts=starts)
    assert len(found.points) == 1
    carry = jax.tree.map(lambda a: a[0], found.carries)
    if name == "slstm":
        a_i, _, a_z, a_o = np.split(px, 4)
        want = (sig(a_o) * np.tanh(a_z), np.tanh(a_z) / (1 - f), 1 / (1 - f), a_i)
        memory_eigenvalues = np.concatenate([f, f])  # c and n
    else:
        d = 2
        q, k, v, o = (px[j * H : (j + 1) * H].reshape(2, d) for j in range(4))
        k = k / math.sqrt(d)
        a_i = px[4 * H : 4 * H + 2]
        C = v[:, :, None] * k[:, None, :] / (1 - f)[:, None, None]
        n = k / (1 - f)[:, None]
        h = (
            np.einsum("sij,sj->si", C, q)
            / np.maximum(np.abs(np.sum(n * q, -1)), np.exp(-a_i))[:, None]
        )
        want = (sig(o).reshape(H) * h.reshape(H), C.reshape(-1), n.reshape(-1), a_i)
        memory_eigenvalues = np.repeat(f, d * d + d)
    for got, w in zip(carry, want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-7, atol=1e-9)
    moduli = np.sort(np.abs(found.eigenvalues[0]))[::-1]
    np.testing.assert_allclose(
        moduli[: len(memory_eigenvalues)], np.sort(memory_eigenvalues)[::-1], rtol=1e-7
    )
    np.testing.assert_allclose(moduli[len(memory_eigenvalues) :], 0.0, atol=1e-9)
    assert found.kind == ("stable",)


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_leading_lyapunov_exponent_is_log_of_the_slowest_forget_gate(name):
    # The same map along a constant input: the carry's Jacobians have the memories'
    # block f (per unit or head) on the diagonal and a coupling through m, which
    # decays; the leading exponent tends to log max f.
    cell, params, x, _, f = constant_input_cell(name)
    xs = jnp.broadcast_to(x, (1, 400, I))
    spectrum = dynamics.lyapunov_spectrum(cell, params, xs, k=1, warmup=50)
    np.testing.assert_allclose(spectrum.exponents[0, 0], np.log(np.max(f)), atol=2e-3)


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_remat_and_stacked_bidirectional_layers_equal_the_plain_runs(name):
    cell, params = build(name, heads=2)
    kw = dict(lengths=jnp.array([T, 6]))

    def loss(p, method):
        return jnp.sum(jnp.sin(lj.unroll(cell, p, XS, method=method, **kw)[0]))

    grads = [jax.grad(loss)(params, method) for method in (lj.Scan(remat=3), lj.Scan())]
    chex.assert_trees_all_close(*grads, rtol=1e-12, atol=1e-14)
    net = lj.recurrent(cell, num_layers=2, bidirectional=True)
    layers = net.init(KEY, I)
    ys = net.apply(layers, XS, **kw)[0]
    # Layer by layer with unroll: forward and backward directions side by side.
    h = XS
    for p in layers:
        fwd = lj.unroll(cell, p.forward, h, **kw)[0]
        bwd = lj.unroll(cell, p.backward, h, reverse=True, **kw)[0]
        h = jnp.concatenate([fwd, bwd], axis=-1)
    np.testing.assert_allclose(ys, h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_carry_gradient_norms_at_the_last_step_are_the_outputs_gradient(name):
    # After the last step the loss depends on the carry only through y = h: the
    # gradient at h is dL/dy_{T-1}, and zero at every other leaf.
    from lstmjax import diagnostics

    cell, params = build(name, heads=2)
    v = jax.random.normal(jax.random.key(8), (T, H), jnp.float64)

    def loss_fn(ys):
        return jnp.sum(ys * v[None], axis=(1, 2)) + 0.5 * jnp.sum(ys[:, -1] ** 2, axis=1)

    norms = diagnostics.carry_grad_norms(cell, params, XS, loss_fn)
    ys, _ = lj.unroll(cell, params, XS, method="scan")
    want = np.linalg.norm(np.asarray(v[-1][None] + ys[:, -1]), axis=-1)
    np.testing.assert_allclose(norms.fields.h[:, -1], want, rtol=1e-12)
    np.testing.assert_allclose(norms.combined[:, -1], want, rtol=1e-12)
    for field in norms.fields._fields[1:]:
        np.testing.assert_allclose(getattr(norms.fields, field)[:, -1], 0.0, atol=1e-14)
    assert np.all(np.asarray(norms.fields.m[:, 0]) > 0)  # earlier, m matters to later steps


def test_checkpoint_round_trip_of_a_net_of_both_cells(tmp_path):
    import optax

    nets = {name: lj.recurrent(build(name)[0], num_layers=2) for name in ("slstm", "mlstm")}
    params = {name: net.init(KEY, I) for name, net in nets.items()}
    state = train.init_state(params, optax.adam(1e-3), key=jax.random.key(5))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(state)
        like = train.init_state(
            {name: net.init(jax.random.key(9), I) for name, net in nets.items()},
            optax.adam(1e-3),
            key=jax.random.key(6),
        )
        restored = ckpt.restore(like).state
    chex.assert_trees_all_equal(restored.params, state.params)
    assert type(restored.params["mlstm"][0].forward) is lj.MLSTMParams


# --- hostile inputs ---------------------------------------------------------------------

FACTORIES = {"slstm": lj.slstm, "mlstm": lj.mlstm}
HOSTILE = {
    "hidden_size 0": (ValueError, lambda f: f(0), r"hidden_size must be an int >= 1; got 0"),
    "hidden_size str": (TypeError, lambda f: f("8"), r"hidden_size must be an int >= 1; got '8'"),
    "num_heads 0": (
        ValueError,
        lambda f: f(8, num_heads=0),
        r"num_heads must be an int >= 1; got 0",
    ),
    "num_heads float": (TypeError, lambda f: f(8, num_heads=2.0), r"num_heads must be an int"),
    "num_heads not dividing": (
        ValueError,
        lambda f: f(6, num_heads=4),
        r"num_heads must divide hidden_size.*got hidden_size=6, num_heads=4",
    ),
    "forget_gate": (
        ValueError,
        lambda f: f(4, forget_gate="tanh"),
        r"forget_gate must be one of \['sigmoid', 'exp'\]; got 'tanh'",
    ),
    "forget_bias nan": (
        ValueError,
        lambda f: f(4, forget_bias=float("nan")),
        r"forget_bias must be finite",
    ),
    "kernel_init": (
        TypeError,
        lambda f: f(4, kernel_init=0.1),
        r"kernel_init must be callable; got 0\.1",
    ),
    "dtype int": (
        TypeError,
        lambda f: f(4, dtype=jnp.int32),
        r"dtype must be a real floating-point dtype.*int32",
    ),
    "positional option": (TypeError, lambda f: f(4, 2), r"positional"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_hostile_factory_arguments_get_clear_errors(name, case):
    error, call, pattern = HOSTILE[case]
    if case == "positional option":  # Python's own error: the options are keyword-only
        with pytest.raises(TypeError, match=pattern):
            call(FACTORIES[name])
        return
    assert_clear(error, lambda: call(FACTORIES[name]), pattern)


def test_hostile_uses_of_the_cells_get_clear_errors():
    cell, params = build("mlstm")
    assert_clear(
        ValueError,
        lambda: lj.unroll(cell, params, XS, method=lj.Affine(algorithm="log")),
        r"algorithm='log'.*mlstm.*not",
    )
    assert_clear(
        ValueError,
        lambda: lj.unroll(build("slstm")[0], build("slstm")[1], XS, method="affine"),
        r"method=Affine needs a cell whose step is affine.*slstm is not",
    )
    assert_clear(
        TypeError,
        lambda: lj.unroll(cell, build("slstm")[1], XS),
        r"cell 'mlstm' expects params of type MLSTMParams; got SLSTMParams",
    )
    assert_clear(
        ValueError,
        lambda: lj.unroll(lj.mlstm(H, num_heads=1, dtype=jnp.float64), params, XS),
        r"params\.w_x has shape \(3, 20\).*expects \(3, 18\)",
    )


def test_dropout_options_that_would_mean_nothing_are_refused():
    # mLSTM: no gate reads h_(t-1); both: memories scaled by exp(-m), so keeping or
    # perturbing a carry unit on its own (zoneout, state noise) is not what it says.
    assert_clear(
        ValueError,
        lambda: lj.recurrent(lj.mlstm(H), recurrent_dropout=0.2),
        r"no gate of cell 'mlstm' reads h_\(t-1\).*recurrent_dropout=0\.2",
    )
    for factory in (lj.slstm, lj.mlstm):
        assert_clear(
            ValueError,
            lambda f=factory: lj.recurrent(f(H), zoneout=0.1),
            r"keeps its memories scaled by exp\(-m\).*zoneout=0\.1",
        )
    cell, params = build("mlstm")
    assert_clear(
        ValueError,
        lambda: lj.recurrent_dropout(cell, params, XS, key=KEY, state_noise=0.1),
        r"recurrent_dropout: cell 'mlstm' keeps its memories scaled.*state_noise=0\.1",
    )
    # The sLSTM's gates read h_(t-1): recurrent dropout acts, and changes the outputs.
    net = lj.recurrent(build("slstm")[0], recurrent_dropout=0.5)
    layers = net.init(KEY, I)
    dropped = net.apply(layers, XS, key=jax.random.key(7))[0]
    assert not np.allclose(dropped, net.apply(layers, XS, deterministic=True)[0])


@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_the_torch_exporter_refuses_them(name):
    pytest.importorskip("torch")
    from lstmjax import interop

    net = lj.recurrent(build(name)[0])
    assert_clear(
        ValueError,
        lambda: interop.to_torch_state_dict(net, net.init(KEY, I)),
        rf"a '{name}' cell has no torch counterpart",
    )

"""The parallel-in-time methods equal the sequential scan at convergence (float64, 1e-10).

Reference: `unroll(method="scan")` (a different algorithm: T dependent
steps); gradients against BPTT through it, to 1e-8 relative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from tests.cell_zoo import CELL_FACTORIES, CELL_IDS, INPUT_SIZE

SOLVERS = ["newton", "quasi_newton", "elk"]
SOLVER_OBJECTS = {"newton": lj.Newton, "quasi_newton": lj.QuasiNewton, "elk": lj.ELK}
B, T = 3, 8
LENGTHS = jnp.array([8, 5, 0])
RESETS = jnp.zeros((B, T), bool).at[0, 4].set(True).at[1, 2].set(True)


def setup(factory, seed=0):
    cell = factory(jnp.float64)
    params = cell.init(jax.random.PRNGKey(seed), INPUT_SIZE)
    xs = jax.random.normal(jax.random.PRNGKey(seed + 1), (B, T, INPUT_SIZE), jnp.float64)
    return cell, params, xs


def close(got, want, rtol=0.0, atol=1e-10):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def loss(cell, params, xs, carry0, method, **kw):
    ys, carry = lj.unroll(cell, params, xs, carry0, method=method, **kw)
    return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))


# d loss / d(params, xs, carry0), one compiled program per cell and method.
loss_grad = jax.jit(jax.grad(loss, argnums=(1, 2, 3)), static_argnums=(0, 4))


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("factory", CELL_FACTORIES, ids=CELL_IDS)
def test_solvers_equal_the_scan_with_lengths_resets_and_reverse(factory, method):
    cell, params, xs = setup(factory)
    for reverse in (False, True):
        kw = dict(lengths=LENGTHS, resets=RESETS, reverse=reverse)
        close(lj.unroll(cell, params, xs, method=method, **kw),
              lj.unroll(cell, params, xs, method="scan", **kw))  # fmt: skip


# ELK shares quasi-Newton's adjoint pass (only its forward iterations differ),
# so it is checked on two cells to keep the suite's time down.
GRADIENT_CASES = [(f, i, m) for f, i in zip(CELL_FACTORIES, CELL_IDS, strict=True)
                  for m in SOLVERS if m != "elk" or i in ("lstm_peephole", "gru")]  # fmt: skip


@pytest.mark.parametrize(
    ("factory", "method"),
    [(f, m) for f, _, m in GRADIENT_CASES],
    ids=[f"{i}-{m}" for _, i, m in GRADIENT_CASES],
)
def test_implicit_gradients_equal_bptt(factory, method):
    """d/d(params, xs, carry0), with lengths and resets, to 1e-8 relative."""
    cell, params, xs = setup(factory, seed=3)
    carry0 = jax.tree.map(lambda c: 0.3 + 0.0 * c, cell.initial_carry((B,)))
    kw = dict(lengths=LENGTHS, resets=RESETS)
    got = loss_grad(cell, params, xs, carry0, method, **kw)
    want = loss_grad(cell, params, xs, carry0, "scan", **kw)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-8 * float(jnp.max(jnp.abs(w))))


def test_the_gradient_is_implicit_not_through_the_iterations():
    """The backward pass contains no while loop (the iterations are not differentiated)."""
    cell, params, xs = setup(CELL_FACTORIES[CELL_IDS.index("lstm")])
    jaxpr = jax.make_jaxpr(jax.grad(lambda p: loss(cell, p, xs, None, "quasi_newton")))(params)
    assert str(jaxpr).count("while") == 1  # the forward solve only


@pytest.mark.parametrize("method", ["newton", "quasi_newton"])
def test_newton_reaches_the_scan_within_t_iterations_from_a_bad_guess(method):
    cell, params, xs = setup(CELL_FACTORIES[CELL_IDS.index("gru")])
    params = params._replace(w_h=3.0 * params.w_h)  # strongly non-linear
    init = jnp.full((B, T, 5), 7.0)
    ys, carry, info = lj.unroll_parallel(
        cell, params, xs, init=init, method=SOLVER_OBJECTS[method](max_iters=T, tol=1e-13)
    )
    assert int(info.iterations) <= T and bool(info.converged)
    close((ys, carry), lj.unroll(cell, params, xs, method="scan"))


def test_stacked_bidirectional_nets_equal_the_scan():
    for name in ("lstm_peephole", "min_gru"):
        cell, _, xs = setup(CELL_FACTORIES[CELL_IDS.index(name)])
        nets = {m: lj.recurrent(cell, 2, bidirectional=True, method=m) for m in ("scan", "newton")}
        params = nets["scan"].init(jax.random.PRNGKey(5), INPUT_SIZE)
        close(nets["newton"].apply(params, xs, lengths=LENGTHS),
              nets["scan"].apply(params, xs, lengths=LENGTHS))  # fmt: skip


def chaotic():
    cell = lj.rnn(6, dtype=jnp.float64)
    params = cell.init(jax.random.PRNGKey(0), 2)
    xs = jax.random.normal(jax.random.PRNGKey(1), (1, 40, 2), jnp.float64)
    return cell, params._replace(w_h=3.0 * params.w_h), xs


def test_non_convergence_raises_naming_residual_and_iterations():
    cell, params, xs = chaotic()
    with pytest.raises(RuntimeError, match=r"did not converge: residual .* after 3 iterations"):
        lj.unroll(cell, params, xs, method=lj.QuasiNewton(max_iters=3))
    _, _, info = lj.unroll_parallel(cell, params, xs, method=lj.QuasiNewton(max_iters=3))
    assert not bool(info.converged) and int(info.iterations) == 3 and float(info.residual) > 1e-3


@pytest.mark.parametrize("method", ["newton", "quasi_newton", "elk"])
def test_a_nan_iterate_never_counts_as_converged(method):
    # XLA's max skips NaN: an all-NaN guess once gave residual -inf, "converged".
    cell = lj.gru(4, dtype=jnp.float64)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 3), jnp.float64)
    init = jnp.full((2, 6, 4), jnp.nan)
    solve = jax.jit(
        lambda p, k: lj.unroll_parallel(
            cell, p, xs, method=SOLVER_OBJECTS[method](max_iters=k), init=init
        ),
        static_argnums=1,
    )
    _, _, info = solve(params, 2)  # states 2..5 still NaN after two iterations
    assert not bool(info.converged) and float(info.residual) == np.inf
    ys, _, info = solve(params, 60)
    if method == "elk":  # the guess is ELK's observation: NaN stays, and it says so
        assert not bool(info.converged) and float(info.residual) == np.inf
        return
    # Each Newton iteration makes one more leading state exact, so from the
    # NaN guess the solve still reaches the scan's answer, and says so.
    assert bool(info.converged)
    close(ys, lj.unroll(cell, params, xs)[0])


def test_non_convergence_under_jit_gives_nan_everywhere():
    cell, params, xs = chaotic()
    f = jax.jit(lambda p: lj.unroll(cell, p, xs, method=lj.QuasiNewton(max_iters=3)))
    ys, carry = f(params)
    assert bool(jnp.all(jnp.isnan(ys))) and bool(jnp.all(jnp.isnan(carry)))
    ys, _ = jax.jit(lambda p: lj.unroll(cell, p, xs, method="quasi_newton"))(params)
    close(ys, lj.unroll(cell, params, xs)[0])  # converged under jit: numbers, not NaN


def test_newton_refuses_jacobians_that_would_not_fit():
    cell = lj.lstm(256)
    params = cell.init(jax.random.PRNGKey(0), 4)
    xs = jnp.zeros((16, 10_000, 4))
    with pytest.raises(ValueError, match=r"full Jacobians \[T, B, N, N\] = \[10000, 16, 512"):
        lj.unroll(cell, params, xs, method="newton")


def test_affine_refuses_a_nonlinear_cell_and_bad_options():
    cell, params, xs = setup(CELL_FACTORIES[0])
    with pytest.raises(ValueError, match="affine in its carry"):
        lj.unroll(cell, params, xs, method="affine")
    with pytest.raises(ValueError, match=r"Newton: max_iters must be an int >= 1; got 0"):
        lj.Newton(max_iters=0)
    with pytest.raises(ValueError, match="QuasiNewton: tol must be a positive finite number"):
        lj.QuasiNewton(tol=-1.0)
    with pytest.raises(ValueError, match="QuasiNewton: tol must be a positive finite number"):
        lj.QuasiNewton(tol=float("inf"))
    with pytest.raises(ValueError, match="method must be a parallel-in-time solver"):
        lj.unroll_parallel(cell, params, xs, method="scan")


def test_float32_tolerance():
    """float32: equal to the float32 scan to 2e-5 (the documented tolerance)."""
    for name in ("lstm", "gru"):
        cell = CELL_FACTORIES[CELL_IDS.index(name)](jnp.float32)
        params = cell.init(jax.random.PRNGKey(0), INPUT_SIZE)
        xs = jax.random.normal(jax.random.PRNGKey(1), (B, 30, INPUT_SIZE), jnp.float32)
        for method in SOLVERS:
            close(lj.unroll(cell, params, xs, method=method),
                  lj.unroll(cell, params, xs, method="scan"), atol=2e-5)  # fmt: skip


# Forward mode: the solvers' derivative is a custom_jvp of the solution (the tangent
# recurrence dh_t = J_t dh_{t-1} + db_t). References: the scan's own forward mode (JAX's
# jvp through lax.scan, a different derivation) to 1e-9 relative, and central differences
# of the scan's loss (float64, step 1e-6: truncation ~1e-12, rounding ~1e-10) to 1e-7.
EPS = 1e-6
# Two custom rules and an integrator; ELK shares quasi-Newton's derivative rule (only its
# forward iterations differ), so it is checked on one cell, and the dense rule on one.
FORWARD_CASES = [
    ("lstm_peephole", "quasi_newton"),
    ("lstm_peephole", "elk"),
    ("gru", "newton"),
    ("gru", "quasi_newton"),
    ("ctrnn_rk4", "quasi_newton"),
]


def direction(tree, seed):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    )


@pytest.mark.parametrize(("name", "method"), FORWARD_CASES)
def test_forward_mode_equals_the_scans_and_finite_differences(name, method):
    cell, params, xs = setup(CELL_FACTORIES[CELL_IDS.index(name)], seed=3)
    carry0 = jax.tree.map(lambda c: 0.3 + 0.0 * c, cell.initial_carry((B,)))
    primals = (params, xs, carry0)
    tangents = (direction(params, 4), direction(xs, 5), direction(carry0, 6))
    kw = dict(lengths=LENGTHS, resets=RESETS, reverse=True)

    def f(m):
        return lambda p, x, c: loss(cell, p, x, c, m, **kw)

    got = jax.jit(lambda *p: jax.jvp(f(method), p, tangents)[1])(*primals)
    want = jax.jvp(f("scan"), primals, tangents)[1]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    shifted = [jax.tree.map(lambda a, d, s=s: a + s * EPS * d, primals, tangents) for s in (1, -1)]
    fd = (f("scan")(*shifted[0]) - f("scan")(*shifted[1])) / (2 * EPS)
    np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-9)


def test_jacfwd_through_a_solver_equals_jacrev_through_the_scan():
    """`jax.jacfwd` (forward, the custom rule) against `jax.jacrev` of the scan (reverse,
    BPTT): the whole Jacobian of the outputs in the inputs, to 1e-10."""
    cell, params, xs = setup(CELL_FACTORIES[CELL_IDS.index("lstm")], seed=7)
    xs = xs[:1, :5]

    def outputs(x, method):
        return lj.unroll(cell, params, x, method=method)[0]

    fwd = jax.jacfwd(outputs)(xs, "quasi_newton")
    rev = jax.jacrev(outputs)(xs, "scan")
    np.testing.assert_allclose(fwd, rev, rtol=0, atol=1e-10)


def test_forward_over_reverse_through_a_solver_equals_the_scans():
    """A Hessian-vector product (jvp of the implicit gradient) equals the scan's, to 1e-8."""
    cell, params, xs = setup(CELL_FACTORIES[CELL_IDS.index("gru")], seed=8)
    v = direction(params, 9)

    def hvp(method):
        grad = jax.grad(lambda p: loss(cell, p, xs, None, method, lengths=LENGTHS))
        return jax.jvp(grad, (params,), (v,))[1]

    for got, want in zip(
        jax.tree.leaves(jax.jit(lambda: hvp("newton"))()), jax.tree.leaves(hvp("scan")), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", SOLVERS)
def test_non_convergence_under_jit_poisons_every_derivative(method):
    """Under jit a failed solve returns NaN, and so must every derivative through it (it was
    exactly 0: a `where` passes zero cotangents back). Converged: BPTT's gradient, 1e-8."""
    cell, params, xs = chaotic()

    def total(p, m):
        return jnp.sum(lj.unroll(cell, p, xs, method=m)[0])

    stopped = SOLVER_OBJECTS[method](max_iters=3)
    grads = jax.jit(jax.grad(lambda p: total(p, stopped)))(params)
    assert all(bool(jnp.all(jnp.isnan(g))) for g in jax.tree.leaves(grads))
    tangent = jax.jit(lambda p: jax.jvp(lambda q: total(q, stopped), (p,), (p,))[1])(params)
    assert bool(jnp.isnan(tangent))
    short = xs[:, :8]  # few enough steps for every method to converge from zeros
    grads = jax.jit(jax.grad(lambda p: jnp.sum(lj.unroll(cell, p, short, method=method)[0])))(
        params
    )
    want = jax.grad(lambda p: jnp.sum(lj.unroll(cell, p, short, method="scan")[0]))(params)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-10)

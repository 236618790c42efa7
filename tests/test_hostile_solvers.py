"""Hostile inputs to the parallel-in-time solvers (`lj.Newton`, `lj.QuasiNewton`, `lj.ELK`,
`unroll(method=...)`, `unroll_parallel`) and the layout of per-step arrays: clear errors
from lstmjax (see `hostile.assert_clear`), or a documented result pinned here.

References for the pinned results: `unroll(method="scan")` (T dependent steps, no solve),
float64, to 1e-10 (the solvers' documented agreement at their default tolerance).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj

I, H, B, T = 3, 4, 2, 6
GRU = lj.gru(H, dtype=jnp.float64)
PARAMS = GRU.init(jax.random.key(0), I)
XS = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
SOLVERS = {"newton": lj.Newton, "quasi_newton": lj.QuasiNewton, "elk": lj.ELK}

# A chaotic tanh RNN (recurrent gain 3): three iterations are far from converged.
CHAOS = lj.rnn(6, dtype=jnp.float64)
CHAOS_PARAMS = CHAOS.init(jax.random.key(0), 2)._replace(
    w_h=3.0 * CHAOS.init(jax.random.key(0), 2).w_h
)
CHAOS_XS = jax.random.normal(jax.random.key(1), (1, 40, 2), jnp.float64)


def close(got, want, atol=1e-10):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=atol)


def parallel(**kw):
    return lambda: lj.unroll_parallel(GRU, PARAMS, XS, **kw)


CASES = {
    "tol inf": (
        ValueError,
        lambda: lj.QuasiNewton(tol=float("inf")),
        r"QuasiNewton: tol must be a positive finite number; got inf",
    ),
    "tol nan": (ValueError, lambda: lj.ELK(tol=float("nan")), r"ELK: tol must be a positive"),
    "tol zero": (ValueError, lambda: lj.Newton(tol=0.0), r"Newton: tol must be a positive"),
    "tol str": (
        TypeError,
        lambda: lj.Newton(tol="1e-6"),
        r"Newton: tol must be a real number; got '1e-6' \(str\)",
    ),
    "tol bool": (TypeError, lambda: lj.QuasiNewton(tol=True), r"tol must be a real number"),
    "tol traced": (
        TypeError,
        lambda: jax.jit(lambda t: lj.QuasiNewton(tol=t))(1e-6),
        r"QuasiNewton: tol must be a concrete number: it fixes the program.*got a traced value",
    ),
    "max_iters 0": (
        ValueError,
        lambda: lj.ELK(max_iters=0),
        r"ELK: max_iters must be an int >= 1; got 0",
    ),
    "max_iters float": (
        TypeError,
        lambda: lj.QuasiNewton(max_iters=2.5),
        r"QuasiNewton: max_iters must be an int >= 1; got 2\.5 \(float\)",
    ),
    "max_iters bool": (TypeError, lambda: lj.Newton(max_iters=True), r"max_iters.*got True"),
    "jacobian_limit None": (
        TypeError,
        lambda: lj.Newton(jacobian_limit=None),
        r"Newton: jacobian_limit must be an int >= 1; got None \(NoneType\)",
    ),
    "jacobian_limit float": (
        TypeError,
        lambda: lj.Newton(jacobian_limit=2e9),
        r"Newton: jacobian_limit must be an int >= 1; got 2000000000\.0",
    ),
    "algorithm int": (
        TypeError,
        lambda: lj.QuasiNewton(algorithm=3),
        r"QuasiNewton: algorithm must be one of \['auto', 'sequential', 'associative', "
        r"'blocked'\]; got 3 \(int\)",
    ),
    "algorithm unknown": (
        ValueError,
        lambda: lj.Newton(algorithm="fast"),
        r"Newton: algorithm must be one of .*got 'fast'",
    ),
    "algorithm log": (ValueError, lambda: lj.ELK(algorithm="log"), r'algorithm="log" is for'),
    "damping negative": (
        ValueError,
        lambda: lj.ELK(damping=-0.5),
        r"ELK: damping must be >= 0 and finite; got -0\.5",
    ),
    "damping inf": (ValueError, lambda: lj.ELK(damping=float("inf")), r"damping must be >= 0"),
    "damping str": (
        TypeError,
        lambda: lj.ELK(damping="0.1"),
        r"ELK: damping must be a real number; got '0\.1'",
    ),
    "unroll_parallel: auto": (
        ValueError,
        parallel(method="auto"),
        r"unroll_parallel: method must be a parallel-in-time solver .*got 'auto'",
    ),
    "unroll_parallel: scan object": (
        ValueError,
        parallel(method=lj.Scan()),
        r"method must be a parallel-in-time solver .*got Scan\(",
    ),
    "unroll_parallel: solver class": (
        TypeError,
        parallel(method=lj.ELK),
        r"method must be an option object, e\.g\. lj\.ELK\(\); got the class",
    ),
    "unroll_parallel: init time-major when batch-major": (
        ValueError,
        parallel(init=jnp.zeros((T, B, H))),
        r"unroll_parallel \(init, leaves \[batch, time, \.\.\.\]\): init has shape \(6, 2, 4\), "
        r"expected \(2, 6, 4\)",
    ),
    "unroll_parallel: init batch-major when time-major": (
        ValueError,
        lambda: lj.unroll_parallel(
            GRU, PARAMS, jnp.swapaxes(XS, 0, 1), time_major=True, init=jnp.zeros((B, T, H))
        ),
        r"\(init, leaves \[time, batch, \.\.\.\]\): init has shape \(2, 6, 4\), expected \(6, 2, 4\)",
    ),
    "unroll_parallel: init of another structure": (
        ValueError,
        parallel(init=(jnp.zeros((B, T, H)), jnp.zeros((B, T, H)))),
        r"init has structure",
    ),
    "unroll_parallel: time_major str": (
        TypeError,
        parallel(time_major="yes"),
        r"time_major must be True or False; got 'yes'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_clear_errors(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_non_convergence_advice_names_only_other_methods(name):
    message = assert_clear(
        RuntimeError,
        lambda: lj.unroll(CHAOS, CHAOS_PARAMS, CHAOS_XS, method=SOLVERS[name](max_iters=3)),
        rf"unroll: method={SOLVERS[name].__name__}\(max_iters=3, .*did not converge: residual "
        r"max\|h_t - f\(h_\(t-1\), x_t\)\| = .* after 3 iterations\. Raise max_iters or tol, try ",
    )
    assert ("method='elk'" in message) == (name != "elk")
    assert ("Newton or" in message) == (name != "newton")
    assert "method='scan'" in message


def test_numpy_scalars_are_numbers():
    """`_checks`' one rule: NumPy scalars and 0-d arrays are taken as the Python numbers they
    hold, stored as such, so equal options are equal, hash equal and share a program."""
    tol = float(np.float32(1e-6))
    got = lj.QuasiNewton(max_iters=np.int64(5), tol=np.float32(1e-6))
    assert got == lj.QuasiNewton(max_iters=5, tol=tol) and hash(got) == hash(
        lj.QuasiNewton(max_iters=5, tol=tol)
    )
    assert type(got.max_iters) is int and type(got.tol) is float
    elk = lj.ELK(damping=jnp.asarray(0.5), tol=np.float64(1e-9))
    assert elk == lj.ELK(damping=0.5, tol=1e-9) and type(elk.damping) is float
    newton = lj.Newton(jacobian_limit=np.int32(2**20))
    assert newton == lj.Newton(jacobian_limit=2**20) and type(newton.jacobian_limit) is int


def same_as_the_scan(got, want):
    """NaN exactly where the reference has NaN, every other value equal to 1e-10."""
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        close(jnp.nan_to_num(g, nan=0.0), jnp.nan_to_num(w, nan=0.0))


NAN_XS = XS.at[1, 2, 0].set(jnp.nan)  # sequence 1, step 2
RESET_AFTER = jnp.zeros((B, T), bool).at[1, 4].set(True)  # sequence 1 restarts at step 4


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_a_nan_input_gives_nan_in_its_segment_only_as_the_scan_does(name):
    """Before: 'did not converge ... raise max_iters or tol'. Now the scan's answer: NaN in
    sequence 1 from the NaN step to the end of its segment (the end of the sequence, or the
    reset after it), every other value equal to the scan's."""
    steps = np.arange(T)
    for resets, nan_steps in ((None, steps >= 2), (RESET_AFTER, (steps >= 2) & (steps < 4))):
        want = lj.unroll(GRU, PARAMS, NAN_XS, resets=resets, method="scan")
        np.testing.assert_array_equal(np.isnan(want[0]).any(-1)[1], nan_steps)  # the reference
        same_as_the_scan(lj.unroll(GRU, PARAMS, NAN_XS, resets=resets, method=name), want)


@pytest.mark.parametrize("algorithm", ["sequential", "associative", "blocked"])
def test_the_affine_pass_forgets_a_nan_at_a_reset_as_the_scan_does(algorithm):
    """The min cells' exact pass (their "auto"): a reset's a_t = 0 used to carry the NaN on
    (0 x NaN = NaN) into every later segment of the row, silently unlike the scan."""
    cell = lj.min_gru(H, dtype=jnp.float64)
    params = cell.init(jax.random.key(2), I)
    want = lj.unroll(cell, params, NAN_XS, resets=RESET_AFTER, method="scan")
    assert not bool(jnp.isnan(want[0][1, 4:]).any())
    got = lj.unroll(cell, params, NAN_XS, resets=RESET_AFTER, method=lj.Affine(algorithm=algorithm))
    same_as_the_scan(got, want)


def test_non_convergence_with_non_finite_inputs_names_them():
    xs = CHAOS_XS.at[0, 5, 1].set(jnp.inf)
    assert_clear(
        RuntimeError,
        lambda: lj.unroll(CHAOS, CHAOS_PARAMS, xs, method=lj.QuasiNewton(max_iters=3)),
        r"did not converge: .* The inputs are not finite: xs holds NaN or inf at "
        r"\[batch, time\] \(0, 5\); check them, or use method='scan' for the scan's answer "
        r"with them\. Otherwise raise max_iters or tol, try method='elk'",
    )


def test_a_non_converged_report_is_one_iterate():
    """`unroll_parallel` stopped early: `ys` are the outputs of the states whose last one is
    `carry` (they were one step apart: ys from F(h), the carry from h)."""
    ys, carry, info = lj.unroll_parallel(CHAOS, CHAOS_PARAMS, CHAOS_XS, method=lj.ELK(max_iters=3))
    assert not bool(info.converged)
    np.testing.assert_array_equal(ys[:, -1], carry)  # the tanh RNN's output is its carry


B_EQ_T = 4  # batch = time: the layout of a per-step array cannot be read from its shape
SQUARE = jax.random.normal(jax.random.key(5), (B_EQ_T, B_EQ_T, I), jnp.float64)
RESETS = jnp.zeros((B_EQ_T, B_EQ_T), bool).at[0, 2].set(True)  # [batch, time]: sequence 0
MASK = jnp.ones((B_EQ_T, B_EQ_T), bool).at[3, 1].set(False)


@pytest.mark.parametrize("method", ["scan", "newton", "quasi_newton", "elk"])
def test_per_step_arrays_follow_time_major_when_batch_equals_time(method):
    """`resets` and `mask` are `[batch, time]`, or `[time, batch]` with time_major=True, also
    when B = T (no shape can tell). Reference: each sequence run on its own by the scan."""
    kw = dict(method=method)
    batch_major = lj.unroll(GRU, PARAMS, SQUARE, resets=RESETS, mask=MASK, **kw)
    time_major = lj.unroll(
        GRU, PARAMS, jnp.swapaxes(SQUARE, 0, 1), resets=RESETS.T, mask=MASK.T, time_major=True, **kw
    )
    close(jnp.swapaxes(time_major[0], 0, 1), batch_major[0])
    # Sequence 0 restarts at t = 2: its last outputs are those of steps 2, 3 alone.
    alone, _ = lj.unroll(GRU, PARAMS, SQUARE[:1, 2:], method="scan")
    close(batch_major[0][0, 2:], alone[0])
    # Sequence 3 skips step 1 (masked): zero output there, and the carry passes over it.
    skipped, _ = lj.unroll(GRU, PARAMS, SQUARE[3:, jnp.array([0, 2, 3])], method="scan")
    close(batch_major[0][3, jnp.array([0, 2, 3])], skipped[0])
    np.testing.assert_array_equal(batch_major[0][3, 1], 0.0)


@pytest.mark.parametrize("time_major", [False, True])
def test_init_follows_the_layout_and_time_order_of_the_outputs(time_major):
    """`init` in the outputs' layout and time order (here the scan's own states, reversed
    within lengths): the solve starts at its answer and stops after 0 iterations."""
    lengths = jnp.array([4, 2, 3, 0])
    xs = SQUARE if not time_major else jnp.swapaxes(SQUARE, 0, 1)
    kw = dict(lengths=lengths, reverse=True, time_major=time_major)
    states, _ = lj.unroll(GRU, PARAMS, xs, **kw)  # the GRU's output is its carry
    # Past a length the carry is the final one (the first step's, reversed); ys are zero there.
    final = lj.unroll(GRU, PARAMS, SQUARE, lengths=lengths, reverse=True)[1]
    if time_major:
        pad = jnp.arange(B_EQ_T)[:, None] >= lengths[None, :]
        states = jnp.where(pad[..., None], final[None], states)
    else:
        pad = jnp.arange(B_EQ_T)[None, :] >= lengths[:, None]
        states = jnp.where(pad[..., None], final[:, None], states)
    ys, carry, info = lj.unroll_parallel(GRU, PARAMS, xs, init=states, method="newton", **kw)
    assert int(info.iterations) == 0 and bool(info.converged)
    close((ys, carry), lj.unroll(GRU, PARAMS, xs, **kw))


def test_a_time_major_net_reads_per_step_arrays_time_major():
    """`lj.recurrent(..., time_major=True).apply(resets=, mask=)`: `[time, batch]`, passed on
    to every layer's `unroll` in that layout (B = T, so only the layout can tell)."""
    nets = {tm: lj.recurrent(GRU, 2, time_major=tm) for tm in (False, True)}
    params = nets[False].init(jax.random.key(6), I)
    o, carry = nets[False].apply(params, SQUARE, resets=RESETS, mask=MASK)
    o_t, carry_t = nets[True].apply(
        params, jnp.swapaxes(SQUARE, 0, 1), resets=RESETS.T, mask=MASK.T
    )
    close((jnp.swapaxes(o_t, 0, 1), carry_t), (o, carry))
    misread, _ = nets[False].apply(params, SQUARE, resets=RESETS.T, mask=MASK.T)
    assert float(jnp.max(jnp.abs(misread - o))) > 1e-3  # the layouts differ: the test can fail

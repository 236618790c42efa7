"""Hostile inputs to `lstmjax.dynamics` (and the `diagnostics` door it shares): clear
errors from lstmjax (see `hostile.assert_clear`), or a documented result pinned here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj
from lstmjax import diagnostics, dynamics

I, H, B, T = 3, 4, 2, 6
LSTM = lj.lstm(H, dtype=jnp.float64)
PARAMS = LSTM.init(jax.random.key(0), I)
GRU_PARAMS = lj.gru(H, dtype=jnp.float64).init(jax.random.key(0), I)
XS = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
ZEROS = lj.LSTMCarry(jnp.zeros((B, H)), jnp.zeros((B, H)))
STARTS = jnp.zeros((3, 2 * H))
X = jnp.zeros(I)


def spectrum(*args, **kw):
    return lambda: dynamics.lyapunov_spectrum(*args, **kw)


def fixed(cell=LSTM, params=PARAMS, x=X, **kw):
    kw.setdefault("starts", STARTS)
    return lambda: dynamics.fixed_points(cell, params, x, **kw)


CASES = {
    # lyapunov_spectrum: the checks of unroll at its door
    "spectrum: params of another cell": (
        TypeError,
        spectrum(LSTM, GRU_PARAMS, XS),
        r"lyapunov_spectrum: cell 'lstm' expects params of type LSTMParams; got GRUParams",
    ),
    "spectrum: feature mismatch": (
        ValueError,
        spectrum(LSTM, PARAMS, jnp.ones((B, T, I + 1))),
        r"lyapunov_spectrum: the inputs have 4 features but params\.w_x has shape \(3, 16\)",
    ),
    "spectrum: carry of another batch": (
        ValueError,
        spectrum(LSTM, PARAMS, XS, lj.LSTMCarry(jnp.zeros((3, H)), jnp.zeros((3, H)))),
        r"lyapunov_spectrum: carry\.h has shape \(3, 4\), expected \(2, 4\)",
    ),
    "spectrum: carry of another size": (
        ValueError,
        spectrum(LSTM, PARAMS, XS, lj.LSTMCarry(jnp.zeros((B, H + 1)), jnp.zeros((B, H + 1)))),
        r"lyapunov_spectrum: carry\.h has shape \(2, 5\), expected \(2, 4\)",
    ),
    "spectrum: array where (h, c) is needed": (
        ValueError,
        spectrum(LSTM, PARAMS, XS, jnp.zeros((B, 2 * H))),
        r"lyapunov_spectrum: carry has structure .*expected .*LSTMCarry",
    ),
    "spectrum: int key": (
        TypeError,
        spectrum(LSTM, PARAMS, XS, key=0),
        r"lyapunov_spectrum: key must be a jax\.random key .*got int",
    ),
    "spectrum: uncalled factory": (
        TypeError,
        spectrum(lj.lstm, PARAMS, XS),
        r"lyapunov_spectrum: cell must be a Cell; got the factory lstmjax\.lstm itself",
    ),
    "spectrum: params None": (
        TypeError,
        spectrum(LSTM, None, XS),
        r"lyapunov_spectrum: params is None; create them with cell\.init",
    ),
    "spectrum: int inputs": (
        TypeError,
        spectrum(LSTM, PARAMS, jnp.ones((B, T, I), jnp.int32)),
        r"xs must be a floating-point array.*got dtype int32",
    ),
    "spectrum: rank 2": (
        ValueError,
        spectrum(LSTM, PARAMS, XS[0]),
        r"lyapunov_spectrum: xs must have rank 3, \[batch, time, features\]; got shape \(6, 3\)",
    ),
    "spectrum: ragged list": (
        TypeError,
        spectrum(LSTM, PARAMS, [[[1.0, 2.0, 3.0]], [[1.0]]]),
        r"xs must be an array; got a list that is not a regular nested list",
    ),
    "spectrum: k float": (
        TypeError,
        spectrum(LSTM, PARAMS, XS, k=2.0),
        r"lyapunov_spectrum: k must be an int >= 1; got 2\.0 \(float\)",
    ),
    "spectrum: k 0": (ValueError, spectrum(LSTM, PARAMS, XS, k=0), r"k must be an int >= 1; got 0"),
    "spectrum: k over D": (
        ValueError,
        spectrum(LSTM, PARAMS, XS, k=9),
        r"lyapunov_spectrum: k = 9 exponents asked for, but the flat carry has only D = 8",
    ),
    "spectrum: warmup float": (
        TypeError,
        spectrum(LSTM, PARAMS, XS, warmup=1.0),
        r"lyapunov_spectrum: warmup must be an int >= 0; got 1\.0",
    ),
    "spectrum: warmup negative": (
        ValueError,
        spectrum(LSTM, PARAMS, XS, warmup=-1),
        r"warmup must be an int >= 0; got -1",
    ),
    "spectrum: warmup too long": (
        ValueError,
        spectrum(LSTM, PARAMS, XS, warmup=3),
        r"lyapunov_spectrum: xs has T = 6 steps; need T > 2 \* warmup = 6",
    ),
    # map_cell
    "map_cell: f not callable": (
        TypeError,
        lambda: dynamics.map_cell(3, 2),
        r"map_cell: f must be callable; got 3 \(int\)",
    ),
    "map_cell: size float": (
        TypeError,
        lambda: dynamics.map_cell(jnp.tanh, 2.0),
        r"map_cell: size must be an int >= 1; got 2\.0",
    ),
    "map_cell: name int": (
        TypeError,
        lambda: dynamics.map_cell(jnp.tanh, 2, name=3),
        r"map_cell: name must be a str; got 3",
    ),
    "carry_size: uncalled factory": (
        TypeError,
        lambda: dynamics.carry_size(lj.gru),
        r"carry_size: cell must be a Cell; got the factory lstmjax\.gru itself",
    ),
    # fixed_points and speed_minima
    "fixed_points: int starts": (
        TypeError,
        fixed(starts=jnp.zeros((3, 2 * H), jnp.int32)),
        r"starts must be a floating-point array.*got dtype int32",
    ),
    "fixed_points: params of another cell": (
        TypeError,
        fixed(params=GRU_PARAMS),
        r"fixed_points: cell 'lstm' expects params of type LSTMParams; got GRUParams",
    ),
    "fixed_points: feature mismatch": (
        ValueError,
        fixed(x=jnp.zeros(I + 1)),
        r"fixed_points: the inputs have 4 features but params\.w_x has shape \(3, 16\)",
    ),
    "fixed_points: int x": (
        TypeError,
        fixed(x=jnp.zeros(I, jnp.int32)),
        r"x must be a floating-point array.*got dtype int32",
    ),
    "fixed_points: a batch of inputs": (
        ValueError,
        fixed(x=jnp.zeros((2, I))),
        r"fixed_points: x must be one constant input \[features\]; got shape \(2, 3\)\. Each "
        r"input has fixed points of its own: call fixed_points once per input",
    ),
    "speed_minima: a batch of inputs": (
        ValueError,
        lambda: dynamics.speed_minima(LSTM, PARAMS, jnp.zeros((2, I)), STARTS),
        r"speed_minima: x must be one constant input.*or jax\.vmap speed_minima over the inputs",
    ),
    "fixed_points: uncalled factory": (
        TypeError,
        fixed(cell=lj.lstm),
        r"fixed_points: cell must be a Cell; got the factory lstmjax\.lstm itself",
    ),
    "fixed_points: non-callable map": (
        TypeError,
        lambda: dynamics.fixed_points(dynamics.map_cell(3, 2), (), jnp.zeros(1), starts=STARTS),
        r"map_cell: f must be callable; got 3",
    ),
    "fixed_points: starts 1-d": (
        ValueError,
        fixed(starts=jnp.zeros(2 * H)),
        r"fixed_points: starts must be flat carries \[S, D\] with D = 8 \(the size of the flat "
        r"carry\) or a carry with leaves \[S, D_i\]; got an array of shape \(8,\)",
    ),
    "fixed_points: starts of another size": (
        ValueError,
        fixed(starts=jnp.zeros((3, H))),
        r"starts must be flat carries \[S, D\] with D = 8 .*got an array of shape \(3, 4\)",
    ),
    "fixed_points: starts of three fields": (
        ValueError,
        fixed(starts=(jnp.zeros((3, H)),) * 3),
        r"fixed_points: starts has structure .*expected .*LSTMCarry",
    ),
    "fixed_points: starts' fields disagree": (
        ValueError,
        fixed(starts=lj.LSTMCarry(jnp.zeros((3, H)), jnp.zeros((4, H)))),
        r"fixed_points: starts\.c has shape \(4, 4\), expected \(3, 4\)",
    ),
    "fixed_points: tol str": (
        TypeError,
        fixed(tol="small"),
        r"fixed_points: tol must be a real number; got 'small' \(str\)",
    ),
    "fixed_points: tol negative": (
        ValueError,
        fixed(tol=-1.0),
        r"fixed_points: tol must be a positive finite number; got -1\.0",
    ),
    "fixed_points: tol inf": (
        ValueError,
        fixed(tol=float("inf")),
        r"tol must be a positive finite number; got inf",
    ),
    "fixed_points: merge_tol negative": (
        ValueError,
        fixed(merge_tol=-0.1),
        r"fixed_points: merge_tol must be >= 0 and finite; got -0\.1",
    ),
    "fixed_points: steps 0": (
        ValueError,
        fixed(steps=0),
        r"fixed_points: steps must be an int >= 1; got 0",
    ),
    "fixed_points: steps float": (
        TypeError,
        fixed(steps=5.0),
        r"fixed_points: steps must be an int >= 1; got 5\.0",
    ),
    "fixed_points: optimizer not a transformation": (
        TypeError,
        fixed(optimizer=0.1),
        r"fixed_points: optimizer must be an optax transformation .*got float",
    ),
    # diagnostics: the same door
    "carry_grad_norms: params of another cell": (
        TypeError,
        lambda: diagnostics.carry_grad_norms(LSTM, GRU_PARAMS, XS, lambda ys: ys[:, -1, 0]),
        r"carry_grad_norms: cell 'lstm' expects params of type LSTMParams",
    ),
    "carry_grad_norms: loss_fn not callable": (
        TypeError,
        lambda: diagnostics.carry_grad_norms(LSTM, PARAMS, XS, "mse"),
        r"carry_grad_norms: loss_fn must be callable; got 'mse'",
    ),
    "jacobian_norms: carry of another batch": (
        ValueError,
        lambda: diagnostics.jacobian_norms(
            LSTM, PARAMS, XS, lj.LSTMCarry(*(jnp.zeros((3, H)),) * 2)
        ),
        r"jacobian_norms: carry\.h has shape \(3, 4\), expected \(2, 4\)",
    ),
    "jacobian_products: int vectors": (
        TypeError,
        lambda: diagnostics.jacobian_products(LSTM, PARAMS, XS, jnp.ones((2 * H, 1), jnp.int32)),
        r"vectors must be a floating-point array.*got dtype int32",
    ),
    "jacobian_products: vectors of another size": (
        ValueError,
        lambda: diagnostics.jacobian_products(LSTM, PARAMS, XS, jnp.ones((H, 1))),
        r"jacobian_products: vectors must be \[batch, carry size, k\] = \[2, 8, k\]",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_clear_errors(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


def test_a_plain_tuple_carry_is_the_lstm_carry():
    """As in `unroll`: `(h, c)` is taken for `LSTMCarry(h, c)` (converted, not misread)."""
    h0 = jax.random.normal(jax.random.key(2), (B, H), jnp.float64)
    c0 = jax.random.normal(jax.random.key(3), (B, H), jnp.float64)
    tuple_ = dynamics.lyapunov_spectrum(LSTM, PARAMS, XS, (h0, c0), k=2)
    named = dynamics.lyapunov_spectrum(LSTM, PARAMS, XS, lj.LSTMCarry(h0, c0), k=2)
    np.testing.assert_array_equal(tuple_.exponents, named.exponents)


def test_numpy_scalars_are_numbers():
    """`_checks`' one rule: a NumPy scalar option means what the Python number means."""
    plain = dynamics.lyapunov_spectrum(LSTM, PARAMS, XS, k=2, warmup=1)
    numpy = dynamics.lyapunov_spectrum(LSTM, PARAMS, XS, k=np.int64(2), warmup=np.int32(1))
    np.testing.assert_array_equal(plain.exponents, numpy.exponents)
    cell = dynamics.map_cell(jnp.tanh, np.int64(2))
    assert cell == dynamics.map_cell(jnp.tanh, 2) and isinstance(cell.size, int)


def test_fixed_points_take_one_input_per_call():
    """The batch semantics: one x `[F]` per call, each with its own fixed points.

    h -> x w_x + h w_h (identity activation, no bias) has the one fixed point
    h* = x w_x (1 - w_h)^-1: 0 for x = 0 and w_x / (1 - w_h) for x = 1 (closed
    form, to 1e-6 after the optimiser). The batch [[0], [1]] once reported no
    fixed point at all; it is refused (CASES), and each input alone is right.
    """
    cell = lj.rnn(1, activation="identity", dtype=jnp.float64)
    params = lj.RNNParams(w_x=jnp.full((1, 1), 0.8), w_h=jnp.full((1, 1), 0.5), b=jnp.zeros(1))
    starts = jnp.linspace(-2.0, 2.0, 4)[:, None]
    for x, h_star in ((0.0, 0.0), (1.0, 0.8 / (1 - 0.5))):
        fp = dynamics.fixed_points(cell, params, jnp.array([x]), starts=starts, steps=np.int64(50))
        assert fp.kind == ("stable",)
        np.testing.assert_allclose(fp.points[:, 0], [h_star], atol=1e-6)
        np.testing.assert_allclose(np.abs(fp.eigenvalues[:, 0]), [0.5], atol=1e-9)

"""Hostile inputs to the cell factories, their params and `step`: clear errors from lstmjax.

Each case names the error type and patterns that the message must contain:
what was expected and what came (see `hostile.assert_clear`).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj

I, H, B = 3, 4, 2
KEY = jax.random.key(0)

FACTORY_CASES = {
    "hidden_size 0": (ValueError, lambda: lj.lstm(0), r"hidden_size must be an int >= 1; got 0"),
    "hidden_size float": (TypeError, lambda: lj.gru(4.0), r"hidden_size.*int.*got 4\.0"),
    "hidden_size str": (TypeError, lambda: lj.rnn("64"), r"hidden_size.*got '64'"),
    "hidden_size bool": (TypeError, lambda: lj.rnn(True), r"hidden_size.*got True"),
    "hidden_size None": (TypeError, lambda: lj.lstm(None), r"hidden_size.*got None"),
    "activation unknown name": (
        ValueError,
        lambda: lj.rnn(H, activation="swish"),
        r"activation must be a callable or one of \[.*'relu'.*\]; got 'swish'",
    ),
    "activation not callable": (TypeError, lambda: lj.rnn(H, activation=3), r"callable.*got 3"),
    "jordan output_activation": (
        ValueError,
        lambda: lj.jordan(H, 2, output_activation="soft"),
        r"output_activation.*got 'soft'",
    ),
    "forget_bias None": (
        TypeError,
        lambda: lj.lstm(H, forget_bias=None),
        r"forget_bias must be a real number; got None",
    ),
    "forget_bias list": (
        TypeError,
        lambda: lj.lstm(H, forget_bias=[1.0]),
        r"forget_bias must be a real number; got \[1\.0\]",
    ),
    "forget_bias nan": (
        ValueError,
        lambda: lj.lstm(H, forget_bias=float("nan")),
        r"forget_bias must be finite; got nan",
    ),
    "forget_bias complex": (
        TypeError,
        lambda: lj.lstm(H, forget_bias=1j),
        r"forget_bias must be a real number; got 1j",
    ),
    "peephole str": (
        TypeError,
        lambda: lj.lstm(H, peephole="yes"),
        r"peephole must be True or False; got 'yes'",
    ),
    "reset_after int": (
        TypeError,
        lambda: lj.gru(H, reset_after=0),
        r"reset_after must be True or False; got 0",
    ),
    "complex dtype": (
        TypeError,
        lambda: lj.lstm(H, dtype=jnp.complex64),
        r"real floating-point dtype.*got complex64",
    ),
    "int dtype": (
        TypeError,
        lambda: lj.gru(H, dtype=jnp.int32),
        r"real floating-point dtype.*got int32",
    ),
    "bad dtype name": (
        TypeError,
        lambda: lj.rnn(H, dtype="float33"),
        r"dtype must be a floating-point dtype; got 'float33'",
    ),
    "kernel_init not callable": (
        TypeError,
        lambda: lj.lstm(H, kernel_init=0.1),
        r"kernel_init must be callable; got 0\.1",
    ),
    "jordan output_size 0": (
        ValueError,
        lambda: lj.jordan(H, 0),
        r"output_size must be an int >= 1; got 0",
    ),
    "input_size 0": (
        ValueError,
        lambda: lj.lstm(H).init(KEY, 0),
        r"input_size must be an int >= 1; got 0",
    ),
    "input_size float": (TypeError, lambda: lj.gru(H).init(KEY, 3.0), r"input_size.*got 3\.0"),
    "initial_carry negative": (
        ValueError,
        lambda: lj.rnn(H).initial_carry(-1),
        r"batch_shape must be an int >= 0; got -1",
    ),
}


@pytest.mark.parametrize("case", sorted(FACTORY_CASES))
def test_factory_arguments(case):
    error, call, pattern = FACTORY_CASES[case]
    assert_clear(error, call, pattern)


def params_of(cell, input_size=I):
    return cell.init(KEY, input_size)


def x(shape=(B, I), dtype=jnp.float32):
    return jnp.ones(shape, dtype)


PARAM_CASES = {
    "lstm params into gru": (
        TypeError,
        lambda: lj.unroll(lj.gru(H), params_of(lj.lstm(H)), x((B, 5, I))),
        r"cell 'gru' expects params of type GRUParams; got LSTMParams",
    ),
    "gru params into lstm step": (
        TypeError,
        lambda: lj.lstm(H).step(params_of(lj.gru(H)), lj.lstm(H).initial_carry(B), x()),
        r"expects params of type LSTMParams; got GRUParams",
    ),
    "hidden 8 into lstm(4)": (
        ValueError,
        lambda: lj.unroll(lj.lstm(4), params_of(lj.lstm(8)), x((B, 5, I))),
        r"params\.w_x has shape \(3, 32\), but cell .lstm. \(hidden_size=4\).*expects \(3, 16\)",
    ),
    "params None": (
        TypeError,
        lambda: lj.unroll(lj.lstm(H), None, x((B, 5, I))),
        r"params is None; create them with cell\.init\(key, input_size=3\)",
    ),
    "params as dict": (
        TypeError,
        lambda: lj.unroll(lj.rnn(H), params_of(lj.rnn(H))._asdict(), x((B, 5, I))),
        r"expects params of type RNNParams; got dict",
    ),
    "factory passed uncalled": (
        TypeError,
        lambda: lj.unroll(lj.lstm, params_of(lj.lstm(H)), x((B, 5, I))),
        r"got the factory lstmjax\.lstm itself.*lj\.lstm\(64\)",
    ),
    "not a cell": (
        TypeError,
        lambda: lj.unroll("lstm", None, x((B, 5, I))),
        r"cell must be a Cell.*got str",
    ),
    "peephole params into plain lstm": (
        ValueError,
        lambda: lj.unroll(lj.lstm(H), params_of(lj.lstm(H, peephole=True)), x((B, 5, I))),
        r"params\.peephole has shape \(3, 4\), but cell 'lstm' expects None",
    ),
    "plain params into peephole lstm": (
        ValueError,
        lambda: lj.unroll(lj.lstm(H, peephole=True), params_of(lj.lstm(H)), x((B, 5, I))),
        r"params\.peephole is None, but cell 'lstm_peephole' expects an array of shape \(3, 4\)",
    ),
    "reset_before params into reset_after gru": (
        ValueError,
        lambda: lj.unroll(lj.gru(H), params_of(lj.gru(H, reset_after=False)), x((B, 5, I))),
        r"params\.b_hn is None, but cell 'gru' expects an array of shape \(4,\)",
    ),
    "feature size mismatch": (
        ValueError,
        lambda: lj.unroll(lj.lstm(H), params_of(lj.lstm(H)), x((B, 5, 7))),
        r"inputs have 7 features but params\.w_x has shape \(3, 16\).*input_size=3",
    ),
    "feature size mismatch in step": (
        ValueError,
        lambda: lj.lstm(H).step(params_of(lj.lstm(H)), lj.lstm(H).initial_carry(B), x((B, 7))),
        r"lstm\.step: the inputs have 7 features.*input_size=3",
    ),
    "complex params": (
        TypeError,
        lambda: lj.unroll(
            lj.rnn(H),
            jax.tree_util.tree_map(lambda a: a.astype(jnp.complex64), params_of(lj.rnn(H))),
            x((B, 5, I)),
        ),
        r"params\.w_x must be real; got complex dtype complex64",
    ),
    "complex carry": (
        TypeError,
        lambda: lj.unroll(
            lj.rnn(H), params_of(lj.rnn(H)), x((B, 5, I)), jnp.zeros((B, H), jnp.complex64)
        ),
        r"carry must be real; got complex dtype complex64",
    ),
    "complex inputs": (
        TypeError,
        lambda: lj.unroll(lj.gru(H), params_of(lj.gru(H)), x((B, 5, I), jnp.complex64)),
        r"xs must be real; got complex dtype complex64",
    ),
    "int step input": (
        TypeError,
        lambda: lj.gru(H).step(
            params_of(lj.gru(H)), lj.gru(H).initial_carry(B), x(dtype=jnp.int32)
        ),
        r"x must be a floating-point array.*got dtype int32",
    ),
    "scalar step input": (
        ValueError,
        lambda: lj.rnn(H).step(params_of(lj.rnn(H)), lj.rnn(H).initial_carry(()), jnp.float32(1.0)),
        r"rnn\.step: x must have a feature axis; got a scalar",
    ),
    "step carry of wrong batch": (
        ValueError,
        lambda: lj.rnn(H).step(params_of(lj.rnn(H)), lj.rnn(H).initial_carry(B + 1), x()),
        r"rnn\.step: carry has shape \(3, 4\), expected \(2, 4\)",
    ),
}


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_params_checked_against_the_cell(case):
    error, call, pattern = PARAM_CASES[case]
    assert_clear(error, call, pattern)


@dataclasses.dataclass(frozen=True)
class Doubled(lj.Cell):
    """`inner` (an Elman cell) with its recur replaced: y = 2 tanh(px + h W_h)."""

    inner: lj.Cell

    @property
    def hidden_size(self):
        return self.inner.hidden_size

    @property
    def output_size(self):
        return self.inner.output_size

    def init(self, key, input_size):
        return self.inner.init(key, input_size)

    def initial_carry(self, batch_shape=()):
        return self.inner.initial_carry(batch_shape)

    def project(self, params, x):
        return self.inner.project(params, x)

    def recur(self, params, h, px):
        h = jnp.tanh(px + h @ params.w_h) * 2.0
        return h, h

    def output(self, h):
        return h


def test_step_cannot_drift_from_project_and_recur():
    """`step` is derived from `project` and `recur`, so replacing one changes both paths."""
    cell = lj.rnn(H, dtype=jnp.float64)
    params = cell.init(KEY, I)

    changed = Doubled(cell)
    xs = jax.random.normal(jax.random.key(1), (B, 1, I), jnp.float64)
    _, y_step = changed.step(params, changed.initial_carry(B), xs[:, 0])
    ys, _ = lj.unroll(changed, params, xs)
    np.testing.assert_allclose(ys[:, 0], y_step, rtol=1e-12)
    expected = 2.0 * np.tanh(np.asarray(xs[:, 0]) @ np.asarray(params.w_x) + np.asarray(params.b))
    np.testing.assert_allclose(y_step, expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["tanh", "relu", "sigmoid", "identity"])
def test_activation_names_are_the_functions(name):
    by_name, by_fn = lj.rnn(H, activation=name), lj.rnn(H, activation=lj_fn(name))
    params = by_name.init(KEY, I)
    xs = jax.random.normal(jax.random.key(2), (B, 4, I))
    np.testing.assert_array_equal(
        lj.unroll(by_name, params, xs)[0], lj.unroll(by_fn, params, xs)[0]
    )


def lj_fn(name):
    return {
        "tanh": jnp.tanh,
        "relu": jax.nn.relu,
        "sigmoid": jax.nn.sigmoid,
        "identity": lambda v: v,
    }[name]

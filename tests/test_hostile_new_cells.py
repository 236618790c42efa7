"""Hostile inputs to the layer-normalised, projected and continuous-time cells and to
the dropout options: clear errors from lstmjax (see `hostile.assert_clear`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj

I, H, B, T = 3, 4, 2, 5
KEY = jax.random.key(0)
XS = jnp.ones((B, T, I), jnp.float32)


def params_of(cell):
    return cell.init(KEY, I)


CASES = {
    "layer_norm str": (
        TypeError,
        lambda: lj.lstm(H, layer_norm="yes"),
        r"layer_norm must be True or False; got 'yes'",
    ),
    "gru layer_norm int": (
        TypeError,
        lambda: lj.gru(H, layer_norm=1),
        r"layer_norm must be True or False; got 1",
    ),
    "gru layer_norm reset_before": (
        ValueError,
        lambda: lj.gru(H, reset_after=False, layer_norm=True),
        r"layer_norm=True needs reset_after=True.*got reset_after=False",
    ),
    "proj_size 0": (
        ValueError,
        lambda: lj.lstm(H, proj_size=0),
        r"proj_size must be an int >= 1; got 0",
    ),
    "proj_size float": (
        TypeError,
        lambda: lj.lstm(H, proj_size=2.0),
        r"proj_size must be an int >= 1; got 2\.0",
    ),
    "proj_size bool": (TypeError, lambda: lj.lstm(H, proj_size=True), r"proj_size.*got True"),
    "proj_init not callable": (
        TypeError,
        lambda: lj.lstm(H, proj_size=2, proj_init=0.1),
        r"proj_init must be callable; got 0\.1",
    ),
    "plain params to LN cell": (
        ValueError,
        lambda: lj.unroll(lj.lstm(H, layer_norm=True), params_of(lj.lstm(H)), XS),
        r"params\.ln_gain_x is None, but cell 'lstm_ln' expects an array of shape \(16,\)",
    ),
    "unprojected params to LSTMP": (
        ValueError,
        lambda: lj.unroll(lj.lstm(H, proj_size=2), params_of(lj.lstm(H)), XS),
        r"params\.w_h has shape \(4, 16\), but cell 'lstm_proj'.*expects \(2, 16\)",
    ),
    "LSTMP carry with h of size H": (
        ValueError,
        lambda: lj.unroll(
            lj.lstm(H, proj_size=2),
            params_of(lj.lstm(H, proj_size=2)),
            XS,
            lj.lstm(H).initial_carry(B),
        ),
        r"carry\.h has shape \(2, 4\), expected \(2, 2\)",
    ),
    "tau 0": (ValueError, lambda: lj.ctrnn(H, tau=0.0), r"tau must be > 0; got 0\.0"),
    "tau negative per unit": (
        ValueError,
        lambda: lj.ctrnn(H, tau=[1.0, -1.0, 1.0, 1.0]),
        r"tau must be finite and > 0; got -1\.0 at 1",
    ),
    "tau nan": (ValueError, lambda: lj.ctrnn(H, tau=float("nan")), r"tau must be finite; got nan"),
    "tau wrong shape": (
        ValueError,
        lambda: lj.ctrnn(H, tau=np.ones(3)),
        r"tau must be a scalar or have shape \[hidden_size\] = \(4,\); got shape \(3,\)",
    ),
    "tau str": (TypeError, lambda: lj.ctrnn(H, tau="1"), r"tau must be a real number; got '1'"),
    "dt 0": (ValueError, lambda: lj.ctrnn(H, dt=0), r"dt must be > 0; got 0"),
    "dt None": (TypeError, lambda: lj.ctrnn(H, dt=None), r"dt must be a real number; got None"),
    "integrator unknown": (
        ValueError,
        lambda: lj.ctrnn(H, integrator="rk45"),
        r"integrator must be one of \['euler', 'rk4'\]; got 'rk45'",
    ),
    "ctrnn activation": (
        ValueError,
        lambda: lj.ctrnn(H, activation="swish"),
        r"activation.*got 'swish'",
    ),
    "recurrent_dropout 1": (
        ValueError,
        lambda: lj.recurrent(lj.lstm(H), recurrent_dropout=1.0),
        r"recurrent_dropout must lie in \[0, 1\); got 1\.0",
    ),
    "zoneout negative": (
        ValueError,
        lambda: lj.recurrent(lj.gru(H), zoneout=-0.1),
        r"zoneout must lie in \[0, 1\); got -0\.1",
    ),
    "input_dropout str": (
        TypeError,
        lambda: lj.recurrent(lj.gru(H), input_dropout="0.1"),
        r"input_dropout must be a real number; got '0\.1'",
    ),
    "state_noise negative": (
        ValueError,
        lambda: lj.recurrent(lj.ctrnn(H), state_noise=-1.0),
        r"state_noise must be >= 0 and finite; got -1\.0",
    ),
    "apply key int": (
        TypeError,
        lambda: lj.recurrent(lj.gru(H), zoneout=0.1).apply(
            lj.recurrent(lj.gru(H)).init(KEY, I), XS, key=3
        ),
        r"recurrent\.apply: key must be a jax\.random key.*got int",
    ),
    "recurrent_dropout key float array": (
        TypeError,
        lambda: lj.recurrent_dropout(
            lj.gru(H), params_of(lj.gru(H)), XS, key=jnp.zeros(2), zoneout=0.1
        ),
        r"key must be a jax\.random key.*dtype float",
    ),
    "recurrent_dropout xs rank 2": (
        ValueError,
        lambda: lj.recurrent_dropout(lj.gru(H), params_of(lj.gru(H)), XS[0], key=KEY, zoneout=0.1),
        r"xs must have rank 3.*got shape \(5, 3\)",
    ),
    "recurrent_dropout int xs": (
        TypeError,
        lambda: lj.recurrent_dropout(
            lj.gru(H), params_of(lj.gru(H)), jnp.ones((B, T, I), jnp.int32), key=KEY
        ),
        r"xs must be a floating-point array.*int32",
    ),
    "recurrent_dropout factory": (
        TypeError,
        lambda: lj.recurrent_dropout(lj.gru, None, XS, key=KEY),
        r"got the factory lstmjax\.gru itself",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_clear_error(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)

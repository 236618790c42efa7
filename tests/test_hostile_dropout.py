"""Hostile inputs to dropout (`lj.recurrent`, `lj.recurrent_dropout`) and to cell options
that cannot work: clear errors from lstmjax (`hostile.assert_clear`), loud warnings, and
the explicit evaluation path (`deterministic=True`) pinned against the plain net.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj

I, H, B, T = 3, 4, 2, 5
KEY = jax.random.key(0)
XS = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
GRU = lj.gru(H)
GRU_PARAMS = GRU.init(KEY, I)
NET = lj.recurrent(GRU, num_layers=2, dropout=0.25)
NET_PARAMS = NET.init(KEY, I)
ZONED = lj.recurrent(GRU, zoneout=0.1)


def masked(**rates):
    return lj.recurrent_dropout(GRU, GRU_PARAMS, XS, key=KEY, **rates)


CASES = {
    "masked cell with the original xs (E > F)": (
        ValueError,
        lambda: lj.unroll(*masked(recurrent_dropout=0.25, zoneout=0.1)[:2], XS),
        r"recurrent_dropout: the cell it returned reads inputs of 11 features \(the 3 of xs "
        r"and 8 mask channels\); got 3\. Pass lj\.unroll the xs that recurrent_dropout "
        r"returned",
    ),
    "masked cell with the original xs (E < F)": (
        ValueError,
        lambda: lj.unroll(
            *lj.recurrent_dropout(
                GRU, GRU.init(KEY, 9), jnp.ones((B, T, 9)), key=KEY, recurrent_dropout=0.25
            )[:2],
            jnp.ones((B, T, 9)),
        ),
        r"reads inputs of 13 features \(the 9 of xs and 4 mask channels\); got 9",
    ),
    "dropout net applied without a key": (
        ValueError,
        lambda: NET.apply(NET_PARAMS, XS),
        r"recurrent\.apply: dropout=0\.25 but no key, so nothing would be dropped or drawn\. "
        r"Pass key=\.\.\. to train with it, or deterministic=True to evaluate without it",
    ),
    "zoneout net applied without a key": (
        ValueError,
        lambda: ZONED.apply(ZONED.init(KEY, I), XS),
        r"zoneout=0\.1 but no key",
    ),
    "key and deterministic together": (
        ValueError,
        lambda: NET.apply(NET_PARAMS, XS, key=KEY, deterministic=True),
        r"got a key and deterministic=True",
    ),
    "deterministic traced under jit": (
        TypeError,
        lambda: jax.jit(NET.apply)(NET_PARAMS, XS, deterministic=True),
        r"deterministic must be a Python bool.*static_argnames='deterministic'",
    ),
    "deterministic str": (
        TypeError,
        lambda: NET.apply(NET_PARAMS, XS, deterministic="yes"),
        r"deterministic must be True or False; got 'yes'",
    ),
    "recurrent_dropout without a key": (
        ValueError,
        lambda: lj.recurrent_dropout(GRU, GRU_PARAMS, XS, recurrent_dropout=0.25),
        r"recurrent_dropout: recurrent_dropout=0\.25 but no key",
    ),
    "language model with dropout without a key": (
        ValueError,
        lambda: lj.lm.language_model(5, 3, GRU, num_layers=2, dropout=0.1).apply(
            lj.lm.language_model(5, 3, GRU, num_layers=2).init(KEY), jnp.zeros((B, T), int)
        ),
        r"dropout=0\.1 but no key",
    ),
    "dropout on a one-layer net": (
        ValueError,
        lambda: lj.recurrent(GRU, dropout=0.1),
        r"recurrent: dropout=0\.1 acts between layers, and a net of num_layers=1 has none",
    ),
    "dropout rate traced": (
        TypeError,
        lambda: jax.jit(lambda r: lj.recurrent(GRU, 2, dropout=r).num_layers)(0.1),
        r"dropout must be a concrete number: it fixes the net",
    ),
    "zoneout traced in recurrent_dropout": (
        TypeError,
        lambda: jax.jit(lambda r: lj.recurrent_dropout(GRU, GRU_PARAMS, XS, key=KEY, zoneout=r))(
            0.1
        ),
        r"zoneout must be a concrete number",
    ),
    "layer-normalised LSTM of one unit": (
        ValueError,
        lambda: lj.lstm(1, layer_norm=True),
        r"lstm: layer_norm=True normalises the cell state c_t over its hidden_size units; with "
        r"hidden_size=1 LN\(c_t\) is always the LN bias",
    ),
    "CT-RNN tau traced": (
        TypeError,
        lambda: jax.jit(lambda tau: lj.ctrnn(H, tau=tau).hidden_size)(2.0),
        r"tau must be a concrete number: it fixes the cell.*got a traced value",
    ),
    "CT-RNN per-unit tau traced": (
        TypeError,
        lambda: jax.jit(lambda tau: lj.ctrnn(H, tau=tau).hidden_size)(jnp.ones(H)),
        r"tau must be a concrete number",
    ),
    "CT-RNN dt traced": (
        TypeError,
        lambda: jax.jit(lambda dt: lj.ctrnn(H, dt=dt).hidden_size)(0.1),
        r"dt must be a concrete number",
    ),
    "LSTM forget_bias traced": (
        TypeError,
        lambda: jax.vmap(lambda b: jnp.zeros(()) + lj.lstm(H, forget_bias=b).hidden_size)(
            jnp.ones(2)
        ),
        r"forget_bias must be a concrete number",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_clear_error(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


WARNINGS = {
    "lstm hidden 2": (lambda: lj.lstm(2, layer_norm=True), r"over its hidden_size=2 units"),
    "lstm proj 1": (
        lambda: lj.lstm(H, layer_norm=True, proj_size=1),
        r"normalises h_\{t-1\} W_h, and with proj_size=1.*keeps only the sign",
    ),
    "gru hidden 1": (
        lambda: lj.gru(1, layer_norm=True),
        r"gru: layer_norm=True normalises h_\{t-1\} W_h, and with hidden_size=1",
    ),
    "lstm one input": (
        lambda: lj.lstm(H, layer_norm=True).init(KEY, 1),
        r"lstm\.init: .*x_t W_x, and with input_size=1",
    ),
    "gru one input": (
        lambda: lj.gru(H, layer_norm=True).init(KEY, 1),
        r"gru\.init: .*x_t W_x, and with input_size=1",
    ),
}


@pytest.mark.parametrize("case", list(WARNINGS), ids=list(WARNINGS))
def test_layer_norm_that_keeps_only_a_sign_warns(case):
    call, pattern = WARNINGS[case]
    with pytest.warns(UserWarning, match=pattern):
        call()


def test_layer_norm_of_one_input_keeps_only_its_sign():
    """What the warning says: LN(x W_x) with one input feature does not see |x|."""
    with pytest.warns(UserWarning):
        cell = lj.gru(H, layer_norm=True)
        params = cell.init(KEY, 1)
    small, large = (cell.project(params, jnp.full((1,), v)) for v in (0.5, 20.0))
    negative = cell.project(params, jnp.full((1,), -0.5))
    np.testing.assert_allclose(small, large, rtol=0, atol=1e-4)  # 40x the input, same px
    assert not np.allclose(small, negative, atol=1e-2)  # the sign does get through


def test_deterministic_pass_is_the_net_without_dropout():
    """`deterministic=True` is exactly the net built without its dropout options."""
    plain = lj.recurrent(GRU, num_layers=2)
    out, carry = NET.apply(NET_PARAMS, XS, deterministic=True)
    ref_out, ref_carry = plain.apply(NET_PARAMS, XS)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(carry, ref_carry)
    dropped, _ = NET.apply(NET_PARAMS, XS, key=KEY)
    assert not np.allclose(dropped, ref_out)  # with a key, dropout acts


def test_deterministic_under_jit_as_a_static_argument():
    apply = jax.jit(NET.apply, static_argnames="deterministic")
    np.testing.assert_array_equal(
        apply(NET_PARAMS, XS, deterministic=True)[0],
        NET.apply(NET_PARAMS, XS, deterministic=True)[0],
    )


def test_a_key_to_a_net_without_dropout_is_allowed():
    plain = lj.recurrent(GRU, num_layers=2)
    np.testing.assert_array_equal(
        plain.apply(NET_PARAMS, XS, key=KEY)[0], plain.apply(NET_PARAMS, XS)[0]
    )

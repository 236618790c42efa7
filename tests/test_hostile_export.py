"""Hostile inputs to the export paths of the interop (lstmjax -> torch, lstmjax -> Flax):
they check what they are handed as the import paths do (`hostile.assert_clear`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj

torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")

I, H, B = 3, 4, 2
KEY = jax.random.key(0)
LSTM_NET = lj.recurrent(lj.lstm(H))
LSTM_PARAMS = LSTM_NET.init(KEY, I)
PROJ_NET = lj.recurrent(lj.lstm(H, proj_size=2))
to_torch = lj.interop.to_torch_state_dict

CASES = {
    "params of a net without the projection": (
        ValueError,
        lambda: to_torch(PROJ_NET, LSTM_PARAMS),
        r"to_torch_state_dict: params\[0\]\.forward\.w_h has shape \(4, 16\), but cell "
        r"'lstm_proj'.*expects \(2, 16\)",
    ),
    "params of fewer layers": (
        ValueError,
        lambda: to_torch(lj.recurrent(lj.lstm(H), num_layers=2), LSTM_PARAMS),
        r"to_torch_state_dict: params hold 1 layers; this net has 2",
    ),
    "params of a bidirectional net": (
        ValueError,
        lambda: to_torch(LSTM_NET, lj.recurrent(lj.lstm(H), bidirectional=True).init(KEY, I)),
        r"params\[0\] has backward direction, but this net is unidirectional",
    ),
    "params of another cell": (
        TypeError,
        lambda: to_torch(LSTM_NET, lj.recurrent(lj.gru(H)).init(KEY, I)),
        r"cell 'lstm' expects params\[0\]\.forward of type LSTMParams; got GRUParams",
    ),
    "params None": (TypeError, lambda: to_torch(LSTM_NET, None), r"params is None"),
    "a cell for the net": (
        TypeError,
        lambda: to_torch(lj.lstm(H), LSTM_PARAMS),
        r"net must be an lj\.recurrent\(\.\.\.\) net.*got LSTMCell",
    ),
    "rnn of an activation torch lacks": (
        ValueError,
        lambda: to_torch(
            lj.recurrent(lj.rnn(H, activation="sigmoid")), lj.recurrent(lj.rnn(H)).init(KEY, I)
        ),
        r"torch\.nn\.RNN's nonlinearity is 'tanh' or 'relu'; this lj\.rnn's activation is "
        r"'sigmoid'",
    ),
    "peephole LSTM": (
        ValueError,
        lambda: to_torch(
            lj.recurrent(lj.lstm(H, peephole=True)),
            lj.recurrent(lj.lstm(H, peephole=True)).init(KEY, I),
        ),
        r"a 'lstm_peephole' cell has no torch counterpart",
    ),
    "flax carry as a plain pair": (
        TypeError,
        lambda: lj.interop.carry_to_flax(nn.LSTMCell(H), (jnp.zeros((B, H)), jnp.zeros((B, H)))),
        r"carry_to_flax: the carry of a Flax LSTMCell comes from an lstmjax LSTMCarry\(h, c\); "
        r"got tuple",
    ),
    "flax carry for a module that is not a cell": (
        TypeError,
        lambda: lj.interop.carry_to_flax(nn.Dense(H), jnp.zeros((B, H))),
        r"carry_to_flax: module must be a flax\.linen LSTMCell.*got Dense",
    ),
    "flax carry from a module name": (
        TypeError,
        lambda: lj.interop.carry_from_flax("lstm", (jnp.zeros((B, H)), jnp.zeros((B, H)))),
        r"carry_from_flax: module must be a flax\.linen LSTMCell.*got str",
    ),
    "flax LSTM carry of one array": (
        TypeError,
        lambda: lj.interop.carry_from_flax(nn.LSTMCell(H), jnp.zeros((B, H))),
        r"carry_from_flax: a Flax LSTMCell carries the pair \(c, h\); got ArrayImpl",
    ),
    "flax GRU carry of a pair": (
        TypeError,
        lambda: lj.interop.carry_to_flax(nn.GRUCell(H), lj.LSTMCarry(jnp.zeros(H), jnp.zeros(H))),
        r"carry_to_flax: carry must be an array; got LSTMCarry",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_clear_error(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


def test_bfloat16_net_exports_bfloat16_tensors():
    """A bfloat16 net (numpy has no bfloat16 for torch to read) exports exact bfloat16 tensors."""
    net = lj.recurrent(lj.gru(H, dtype=jnp.bfloat16))
    params = net.init(KEY, I)
    state = to_torch(net, params)
    assert {t.dtype for t in state.values()} == {torch.bfloat16}
    back = state["weight_ih_l0"].to(torch.float32).numpy()
    np.testing.assert_array_equal(back, np.asarray(params[0].forward.w_x, np.float32).T)


def test_one_layer_torch_module_with_dropout_imports_without_it():
    """torch drops between layers only, so a one-layer module's dropout never acts; the net
    gets 0.0 (lj.recurrent refuses dropout on one layer) and equals the module exactly."""
    import warnings

    with warnings.catch_warnings():  # torch warns that the dropout will never act
        warnings.simplefilter("ignore", UserWarning)
        module = torch.nn.GRU(I, H, num_layers=1, dropout=0.5, batch_first=True)
    net, params = lj.interop.from_torch(module)
    assert net.dropout == 0.0
    x = np.random.default_rng(0).standard_normal((B, 5, I)).astype(np.float32)
    module.train()  # even in training mode torch applies no dropout to one layer
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(net.apply(params, jnp.asarray(x))[0], expected, atol=1e-5)

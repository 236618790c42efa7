"""Hostile inputs to `recurrent`, the feed-forward pieces, `losses` and `lm`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj

B, T, I, H = 2, 5, 3, 4
KEY = jax.random.key(0)
UNI = lj.recurrent(lj.lstm(H), num_layers=2)
BI = lj.recurrent(lj.lstm(H), num_layers=2, bidirectional=True)
P_UNI, P_BI = UNI.init(KEY, I), BI.init(KEY, I)
X = jnp.ones((B, T, I))
EMB = lj.embedding(10, 4)
P_EMB = EMB.init(KEY)

LAYER_CASES = {
    "bidirectional params into a unidirectional net": (
        ValueError,
        lambda: UNI.apply(P_BI, X),
        r"params\[0\] has backward direction, but this net is unidirectional",
    ),
    "unidirectional params into a bidirectional net": (
        ValueError,
        lambda: BI.apply(P_UNI, X),
        r"params\[0\] has no backward direction, but this net is bidirectional",
    ),
    "too few layers": (
        ValueError,
        lambda: UNI.apply(P_UNI[:1], X),
        r"params hold 1 layers; this net has 2",
    ),
    "cell params instead of net params": (
        TypeError,
        lambda: UNI.apply(lj.lstm(H).init(KEY, I), X),
        r"params must be a tuple of LayerParams.*got LSTMParams",
    ),
    "params None": (
        TypeError,
        lambda: UNI.apply(None, X),
        r"params is None; create them with net\.init",
    ),
    "second layer of another size": (
        ValueError,
        lambda: UNI.apply((P_UNI[0], lj.recurrent(lj.lstm(H + 1), 2).init(KEY, I)[1]), X),
        r"params\[1\]\.forward\.w_x has shape|inputs have 4 features but params\[1\]\.forward\.w_x",
    ),
    "carry leading axis": (
        ValueError,
        lambda: lj.recurrent(lj.gru(H), num_layers=2).apply(
            lj.recurrent(lj.gru(H), num_layers=2).init(KEY, I), X, jnp.zeros((1, B, H))
        ),
        r"num_layers \* directions = 2; got \[1\]",
    ),
    "dropout string": (
        TypeError,
        lambda: lj.recurrent(lj.rnn(3), dropout="0.5"),
        r"dropout must be a real number; got '0\.5'",
    ),
    "dropout 1.5": (
        ValueError,
        lambda: lj.recurrent(lj.rnn(3), dropout=1.5),
        r"dropout must lie in \[0, 1\); got 1\.5",
    ),
    "dropout nan": (
        ValueError,
        lambda: lj.recurrent(lj.rnn(3), dropout=float("nan")),
        r"dropout must be finite",
    ),
    "num_layers 0": (
        ValueError,
        lambda: lj.recurrent(lj.rnn(3), num_layers=0),
        r"num_layers must be an int >= 1; got 0",
    ),
    "factory uncalled": (
        TypeError,
        lambda: lj.recurrent(lj.gru),
        r"got the factory lstmjax\.gru itself",
    ),
    "bidirectional str": (
        TypeError,
        lambda: lj.recurrent(lj.rnn(3), bidirectional="yes"),
        r"bidirectional must be True or False",
    ),
}

FEEDFORWARD_CASES = {
    "embedding id -1": (
        ValueError,
        lambda: EMB.apply(P_EMB, jnp.array([1, -1])),
        r"embedding: ids must lie in \[0, vocab_size\) = \[0, 10\); got -1 at 1",
    ),
    "embedding id = vocab": (
        ValueError,
        lambda: EMB.apply(P_EMB, jnp.array([[3, 10]])),
        r"got 10 at \(0, 1\)",
    ),
    "embedding float ids": (
        TypeError,
        lambda: EMB.apply(P_EMB, jnp.ones((2,))),
        r"ids must be integer token ids; got dtype float",
    ),
    "embedding size 0": (
        ValueError,
        lambda: lj.embedding(0, 4),
        r"vocab_size must be an int >= 1; got 0",
    ),
    "dense size str": (TypeError, lambda: lj.dense("8"), r"output_size must be an int"),
    "dense features": (
        ValueError,
        lambda: lj.dense(2).apply(lj.dense(2).init(KEY, 3), jnp.ones((4, 5))),
        r"dense: x has 5 features.*input_size=3",
    ),
    "mlp sizes int": (
        ValueError,
        lambda: lj.mlp(8),
        r"sizes must be a non-empty sequence of ints; got 8",
    ),
    "mlp size 0": (ValueError, lambda: lj.mlp([8, 0]), r"sizes\[1\] must be an int >= 1; got 0"),
    "last_valid lengths too long": (
        ValueError,
        lambda: lj.last_valid(jnp.ones((B, T, 3)), jnp.array([5, 7])),
        r"last_valid: lengths must lie in \[0, T\] = \[0, 5\]; got 7 at 1",
    ),
    "last_valid negative": (
        ValueError,
        lambda: lj.last_valid(jnp.ones((B, T, 3)), [-1, 2]),
        r"got -1 at 0",
    ),
    "many_to_one lengths": (
        ValueError,
        lambda: lj.losses.many_to_one(jnp.ones((B, T, 3)), jnp.ones((B, 3)), jnp.array([6, 1])),
        r"lengths must lie in \[0, T\] = \[0, 5\]; got 6",
    ),
    "many_to_many lengths": (
        ValueError,
        lambda: lj.losses.many_to_many(jnp.ones((B, T, 3)), jnp.ones((B, T, 3)), jnp.array([6, 1])),
        r"sequence_mask: lengths must lie in \[0, T\]",
    ),
    "cross_entropy label -1": (
        ValueError,
        lambda: lj.losses.cross_entropy(jnp.zeros((B, 4)), jnp.array([0, -1])),
        r"labels must lie in \[0, vocab_size\) = \[0, 4\); got -1 at 1",
    ),
    "cross_entropy label 4": (
        ValueError,
        lambda: lj.losses.cross_entropy(jnp.zeros((B, 4)), jnp.array([4, 0])),
        r"got 4 at 0",
    ),
    "next_token lengths": (
        ValueError,
        lambda: lj.losses.next_token(
            jnp.zeros((B, T, 4)), jnp.zeros((B, T + 1), jnp.int32), jnp.array([7, 1])
        ),
        r"next_token: lengths must lie in \[0, T\] = \[0, 6\]; got 7",
    ),
    "lm tokens as floats": (
        TypeError,
        lambda: LM.apply(P_LM, jnp.ones((B, T))),
        r"ids must be integer token ids",
    ),
    "lm token out of range": (
        ValueError,
        lambda: LM.apply(P_LM, jnp.full((B, T), 11)),
        r"embedding: ids must lie in \[0, vocab_size\) = \[0, 11\); got 11",
    ),
}
LM = lj.lm.language_model(11, 3, lj.gru(H))
P_LM = LM.init(KEY)


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_recurrent(case):
    error, call, pattern = LAYER_CASES[case]
    assert_clear(error, call, pattern)


@pytest.mark.parametrize("case", sorted(FEEDFORWARD_CASES))
def test_feedforward_and_losses(case):
    error, call, pattern = FEEDFORWARD_CASES[case]
    assert_clear(error, call, pattern)


def test_out_of_range_ids_under_jit_are_loud():
    """Under jit ids cannot be checked: an id outside [0, V) (negative too) gives NaN, never a row."""
    rows = jax.jit(EMB.apply)(P_EMB, jnp.array([0, -1, 10, 9]))
    assert np.all(np.isfinite(rows[0])) and np.all(np.isfinite(rows[3]))
    assert np.all(np.isnan(rows[1])) and np.all(np.isnan(rows[2]))
    np.testing.assert_array_equal(rows[3], P_EMB.table[9])
    nll = jax.jit(lj.losses.token_nll)(jnp.zeros((3, 4)), jnp.array([0, -1, 4]))
    assert np.isfinite(nll[0]) and np.isnan(nll[1]) and np.isnan(nll[2])


def test_masked_targets_cannot_poison_losses_or_gradients():
    """NaN/inf in padded predictions and targets reach neither the loss nor a gradient."""
    preds = jnp.ones((B, T, 3)).at[0, 3:].set(jnp.nan)
    targets = jnp.zeros((B, T, 3)).at[0, 3:].set(jnp.inf)
    lengths = jnp.array([3, 5])
    loss, g = jax.value_and_grad(lambda p: lj.losses.many_to_many(p, targets, lengths))(preds)
    np.testing.assert_allclose(loss, 1.0, rtol=1e-12)  # (1 - 0)^2 at every valid entry
    assert np.all(np.isfinite(g)) and np.all(g[0, 3:] == 0.0)
    mask = jnp.arange(T)[None, :] < lengths[:, None]
    loss2, g2 = jax.value_and_grad(lambda p: lj.losses.mse(p, targets, mask))(preds)
    np.testing.assert_allclose(loss2, 1.0, rtol=1e-12)
    assert np.all(np.isfinite(g2)) and np.all(g2[0, 3:] == 0.0)
    ys = jnp.ones((B, T, 3)).at[1].set(jnp.nan)  # sequence 1 has length 0
    y_loss, y_grad = jax.value_and_grad(
        lambda y: lj.losses.many_to_one(y, jnp.zeros((B, 3)).at[1].set(jnp.nan), jnp.array([2, 0]))
    )(ys)
    np.testing.assert_allclose(y_loss, 1.0, rtol=1e-12)
    assert np.all(np.isfinite(y_grad))

"""Bad input gets a clear error at trace time, naming what was expected and what came."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj

B, T, I, H = 2, 5, 3, 4


@pytest.fixture
def lstm():
    cell = lj.lstm(H)
    return cell, cell.init(jax.random.key(0), I)


def xs(shape=(B, T, I), dtype=jnp.float32):
    return jnp.ones(shape, dtype)


def test_wrong_rank(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"rank 3.*\[batch, time, features\].*\(5, 3\)"):
        lj.unroll(cell, params, xs((T, I)))


def test_feature_size_mismatch(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"7 features.*input_size=3"):
        lj.unroll(cell, params, xs((B, T, 7)))
    with pytest.raises(ValueError, match=r"7 features.*input_size=3"):
        cell.step(params, cell.initial_carry(B), xs((B, 7)))


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_or_boolean_inputs(lstm, dtype):
    cell, params = lstm
    with pytest.raises(TypeError, match=r"floating-point.*got dtype"):
        lj.unroll(cell, params, xs(dtype=dtype))
    with pytest.raises(TypeError, match=r"floating-point"):
        cell.step(params, cell.initial_carry(B), xs((B, I), dtype))


def test_carry_of_wrong_shape(lstm):
    cell, params = lstm
    bad = lj.LSTMCarry(h=jnp.zeros((B, H + 1)), c=jnp.zeros((B, H + 1)))
    with pytest.raises(ValueError, match=r"carry leaf has shape \(2, 5\), expected \(2, 4\)"):
        lj.unroll(cell, params, xs(), bad)
    with pytest.raises(ValueError, match=r"carry has structure"):
        lj.unroll(cell, params, xs(), jnp.zeros((B, H)))  # an array where (h, c) is needed


def test_lengths_of_wrong_shape_or_dtype(lstm):
    cell, params = lstm
    with pytest.raises(
        ValueError, match=r"lengths must have shape \[batch\] = \(2,\); got shape \(3,\)"
    ):
        lj.unroll(cell, params, xs(), lengths=jnp.array([1, 2, 3]))
    with pytest.raises(TypeError, match=r"integer array; got dtype float"):
        lj.unroll(cell, params, xs(), lengths=jnp.array([1.0, 2.0]))


def test_lengths_out_of_range(lstm):
    cell, params = lstm
    with pytest.raises(
        ValueError, match=r"\[0, T\] = \[0, 5\]; got \[6\] at batch positions \[1\]"
    ):
        lj.unroll(cell, params, xs(), lengths=jnp.array([5, 6]))
    with pytest.raises(ValueError, match=r"got \[-1\]"):
        lj.unroll(cell, params, xs(), lengths=np.array([-1, 2]))


def test_lengths_under_jit_are_clipped_as_documented(lstm):
    cell, params = lstm
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    run = jax.jit(lambda lengths: lj.unroll(cell, params, x, lengths=lengths))
    clipped = run(jnp.array([9, -2]))  # cannot be checked under jit: acts as [5, 0]
    expected = lj.unroll(cell, params, x, lengths=jnp.array([5, 0]))
    np.testing.assert_allclose(clipped[0], expected[0], rtol=1e-6, atol=1e-7)


def test_recurrent_carry_leading_axis():
    net = lj.recurrent(lj.gru(H), num_layers=2)
    params = net.init(jax.random.key(0), I)
    with pytest.raises(ValueError, match=r"num_layers \* directions = 2; got \[1\]"):
        net.apply(params, xs(), jnp.zeros((1, B, H)))


def test_bad_sizes_and_options():
    with pytest.raises(ValueError, match=r"hidden_size must be a positive int; got 0"):
        lj.lstm(0)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\); got 1.5"):
        lj.recurrent(lj.rnn(3), dropout=1.5)
    with pytest.raises(TypeError, match=r"ids must be integers"):
        emb = lj.embedding(10, 4)
        emb.apply(emb.init(jax.random.key(0)), jnp.ones((2,)))

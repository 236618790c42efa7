"""Hostile inputs to `generate`: clear errors when concrete, a loud invalid token under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj
from lstmjax import generate

V, H = 6, 4
LM = lj.lm.language_model(V, 3, lj.lstm(H))
PARAMS = LM.init(jax.random.key(0))
KEY = jax.random.key(1)


def sample(prompt=(1, 2), n=3, **kw):
    return lambda: generate.sample(
        KEY, LM.step, PARAMS, LM.initial_carry(1), jnp.array(prompt), n, **kw
    )


CASES = {
    "temperature nan": (
        ValueError,
        sample(temperature=float("nan")),
        r"temperature must be finite; got nan",
    ),
    "temperature negative": (
        ValueError,
        sample(temperature=-0.5),
        r"temperature must be >= 0 \(0 = greedy\); got -0\.5",
    ),
    "temperature inf": (
        ValueError,
        sample(temperature=float("inf")),
        r"temperature must be finite",
    ),
    "temperature str": (
        TypeError,
        sample(temperature="hot"),
        r"temperature must be a real number; got 'hot'",
    ),
    "top_k 0": (ValueError, sample(top_k=0), r"top_k must be an int >= 1; got 0"),
    "top_k above vocab": (
        ValueError,
        sample(top_k=V + 1),
        r"top_k must be an int in \[1, V\] = \[1, 6\]; got 7",
    ),
    "top_k float": (TypeError, sample(top_k=2.0), r"top_k must be an int"),
    "prompt id -1": (
        ValueError,
        sample(prompt=(1, -1)),
        r"sample: prompt_ids must lie in \[0, vocab_size\) = \[0, 6\); got -1 at \(0, 1\)",
    ),
    "prompt id = vocab": (ValueError, sample(prompt=(6,)), r"got 6 at \(0, 0\)"),
    "float prompt": (TypeError, sample(prompt=(1.0, 2.0)), r"prompt_ids must be integer token ids"),
    "empty prompt": (
        ValueError,
        sample(prompt=()),
        r"prompt_ids must be \[B, P\] or \[P\] with P >= 1",
    ),
    "num_tokens negative": (ValueError, sample(n=-1), r"num_tokens must be an int >= 0; got -1"),
    "filter_logits temperature": (
        ValueError,
        lambda: generate.filter_logits(jnp.zeros(4), -1.0),
        r"temperature must be >= 0",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_clear_errors(case):
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


def test_nan_logits_give_the_invalid_token_never_a_plausible_one():
    logits = jnp.array([[0.0, 1.0, 2.0], [jnp.nan, 0.0, 0.0]])
    for t in (0.0, 1.0):
        tokens = generate.sample_logits(KEY, logits, t)
        assert int(tokens[1]) == generate.INVALID_TOKEN and 0 <= int(tokens[0]) < 3


def test_traced_bad_temperature_gives_the_invalid_token():
    logits = jnp.array([[0.0, 1.0, 2.0]])
    draw = jax.jit(lambda t: generate.sample_logits(KEY, logits, t))
    assert int(draw(jnp.nan)[0]) == generate.INVALID_TOKEN
    assert int(draw(-1.0)[0]) == generate.INVALID_TOKEN
    assert int(draw(0.0)[0]) == 2  # greedy


def test_a_broken_model_cannot_emit_token_zero_forever():
    """Parameters with NaN make every logit NaN: sampling says so with -1, not with token 0."""
    broken = PARAMS._replace(readout=jax.tree_util.tree_map(lambda a: a * jnp.nan, PARAMS.readout))
    out = generate.sample(KEY, LM.step, broken, LM.initial_carry(1), jnp.array([1, 2]), 4)
    np.testing.assert_array_equal(out, generate.INVALID_TOKEN)

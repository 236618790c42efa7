"""Sampling from a language model: the jitted carry-forward scan against a
reference that re-runs the whole prefix through the network each time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj
from lstmjax import generate, lm, tasks

V = 11
KEY = jax.random.key(0)


PROMPT = np.array([[1, 2, 3], [4, 4, 0]])  # one shape for most tests: fewer compilations
N = 6


@pytest.fixture(scope="module")
def model():
    # float64 everywhere, so that the step-by-step and whole-prefix paths agree
    # to ~1e-15 and the sampled tokens cannot differ by rounding.
    m = lm.language_model(V, 8, lj.lstm(16, dtype=jnp.float64), 2, dtype=jnp.float64)
    return m, jax.jit(m.init)(jax.random.key(42))


@pytest.fixture(scope="module")
def logits_fn(model):
    """Jitted `apply` returning the logits only: `(params, tokens [B, T]) -> [B, T, V]`."""
    m, _ = model
    return jax.jit(lambda params, tokens: m.apply(params, tokens)[0])


def reference_sample(logits_fn, params, prompt, num_tokens, key, temperature, top_k):
    """Python loop: each token from the full prefix run through the whole
    network by `apply` (no carry kept between tokens), with top-k and
    temperature written out in NumPy.

    The prefix sits in a buffer of fixed length (one compilation); the model
    is causal, so the tokens after the prefix do not change its logits.
    """
    B, P = prompt.shape
    seq = np.zeros((B, P + num_tokens), np.int32)
    seq[:, :P] = prompt
    keys = jax.random.split(key, num_tokens)
    out = []
    for i in range(num_tokens):
        logits = np.asarray(logits_fn(params, jnp.asarray(seq)))[:, P + i - 1]  # [B, V]
        if top_k is not None:
            kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
            logits = np.where(logits >= kth, logits, -np.inf)
        if temperature == 0:
            token = logits.argmax(-1)
        else:
            token = np.asarray(jax.random.categorical(keys[i], jnp.asarray(logits / temperature)))
        out.append(token)
        seq[:, P + i] = token
    return np.stack(out, axis=1)


def test_step_matches_apply(model):
    m, params = model
    tokens = jax.random.randint(KEY, (3, 7), 0, V)
    logits, carry = jax.jit(m.apply)(params, tokens)
    c, step = m.initial_carry(3), jax.jit(m.step)
    for t in range(7):
        c, step_logits = step(params, c, tokens[:, t])
        np.testing.assert_allclose(step_logits, logits[:, t], rtol=1e-12, atol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(c), jax.tree_util.tree_leaves(carry), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("temperature", "top_k"), [(0.7, 4), (1.3, None), (0.0, None)])
def test_scan_matches_prefix_rerunning_reference(model, logits_fn, temperature, top_k):
    m, params = model
    got = generate.sample(
        KEY, m.step, params, m.initial_carry(2), PROMPT, N, temperature=temperature, top_k=top_k
    )
    assert got.shape == (2, N) and got.dtype == jnp.int32
    expected = reference_sample(logits_fn, params, PROMPT, N, KEY, temperature, top_k)
    np.testing.assert_array_equal(got, expected)


def test_top_k_one_and_tiny_temperature_are_greedy(model, logits_fn):
    m, params = model
    args = (m.step, params, m.initial_carry(2), PROMPT, N)
    greedy = generate.sample(KEY, *args, temperature=0.0)
    expected = reference_sample(logits_fn, params, PROMPT, N, KEY, 0.0, None)
    np.testing.assert_array_equal(greedy, expected)
    for key in (KEY, jax.random.key(7)):
        np.testing.assert_array_equal(generate.sample(key, *args, top_k=1), greedy)
        np.testing.assert_array_equal(generate.sample(key, *args, temperature=1e-6), greedy)


def test_same_key_same_text_and_other_key_other_text(model):
    m, params = model
    args = (m.step, params, m.initial_carry(1), np.array([3], np.int32), 40)
    a = generate.sample(KEY, *args, temperature=1.5)
    assert a.shape == (40,)  # a 1-D prompt gives a 1-D result
    np.testing.assert_array_equal(generate.sample(KEY, *args, temperature=1.5), a)
    assert not np.array_equal(generate.sample(jax.random.key(1), *args, temperature=1.5), a)


def test_sample_logits_follows_the_filtered_distribution():
    # 4000 draws from one row of logits: the empirical frequencies match
    # softmax(top-k(logits) / T), written out in NumPy; a binomial std is at
    # most 0.008, the tolerance 0.03.
    n, temperature, top_k = 4000, 2.0, 5
    logits = np.random.default_rng(0).normal(size=V) * 2
    draw = jax.jit(generate.sample_logits, static_argnames="top_k")
    tokens = draw(KEY, jnp.tile(jnp.asarray(logits), (n, 1)), temperature, top_k=top_k)
    assert tokens.shape == (n,) and tokens.dtype == jnp.int32
    kth = np.sort(logits)[-top_k]
    z = np.where(logits >= kth, logits / temperature, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    freq = np.bincount(np.asarray(tokens), minlength=V) / n
    assert np.all(freq[p == 0] == 0)  # never outside the top k
    np.testing.assert_allclose(freq, p, atol=0.03)


def test_step_is_traced_a_fixed_number_of_times(model):
    # The carry goes forward inside scans: the step function is traced a
    # constant number of times, however many tokens are generated (one more
    # than the scans need: `sample` reads the vocabulary size off one traced
    # step to check the prompt's ids).
    m, params = model
    calls = []

    def counting_step(params, carry, ids):
        calls.append(1)
        return m.step(params, carry, ids)

    counts = []
    for n in (3, 30):
        calls.clear()
        # eval_shape traces the jitted sampler without compiling it.
        jax.eval_shape(
            lambda n=n: generate.sample(
                KEY, counting_step, params, m.initial_carry(1), PROMPT[:1], n
            )
        )
        counts.append(len(calls))
    assert counts[1] <= counts[0] <= 4  # the check's trace is cached after the first call


def test_generate_text_with_a_vocabulary(model):
    m, params = model
    vocab = tasks.build_vocab("abcdefghijk")
    # The same call as `sample` with the 1-D prompt [3] ("d"): the same text.
    text = generate.generate_text(KEY, m, params, vocab, "d", 40, temperature=1.5)
    ids = generate.sample(
        KEY, m.step, params, m.initial_carry(1), np.array([3], np.int32), 40, temperature=1.5
    )
    assert len(text) == 40 and text == vocab.decode(ids)


def test_zero_tokens_and_bad_arguments(model):
    m, params = model
    args = (m.step, params, m.initial_carry(1))
    assert generate.sample(KEY, *args, np.array([[1]]), 0).shape == (1, 0)
    with pytest.raises(ValueError, match="P >= 1"):
        generate.sample(KEY, *args, np.zeros((1, 0), int), 5)
    with pytest.raises(TypeError, match="integer token ids"):
        generate.sample(KEY, *args, np.array([1.0]), 5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate.sample(KEY, *args, np.array([1]), 5, temperature=-1.0)
    with pytest.raises(ValueError, match=r"top_k must be an int in \[1, V\]"):
        generate.sample(KEY, *args, np.array([1]), 5, top_k=V + 1)
    with pytest.raises(ValueError, match="at least one character"):
        generate.generate_text(KEY, m, params, tasks.build_vocab("ab"), "", 5)

"""Losses against hand computations in NumPy, and padding that never counts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstmjax import losses

RNG = np.random.default_rng(0)
TOL = dict(rtol=1e-12, atol=1e-12)


def np_log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_nll(logits, labels):
    logp = np_log_softmax(logits)
    return -np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]


def ragged(B=4, T=6, F=3, V=5):
    """Random predictions, targets and lengths (one sequence of length 0)."""
    preds = RNG.normal(size=(B, T, F))
    targets = RNG.normal(size=(B, T, F))
    logits = RNG.normal(size=(B, T, V)) * 2
    labels = RNG.integers(0, V, size=(B, T))
    lengths = np.array([T, 3, 1, 0][:B])
    return preds, targets, logits, labels, lengths


def valid_mask(lengths, T):
    return np.arange(T)[None, :] < lengths[:, None]


# ----------------------------------------------------------------------------
# Basic losses
# ----------------------------------------------------------------------------


def test_mse_matches_numpy():
    pred, target = RNG.normal(size=(3, 4, 2)), RNG.normal(size=(3, 4, 2))
    expected = np.sum((pred - target) ** 2) / pred.size
    np.testing.assert_allclose(losses.mse(pred, target), expected, **TOL)


def test_mse_with_prefix_mask_matches_numpy():
    preds, targets, _, _, lengths = ragged()
    mask = valid_mask(lengths, preds.shape[1])
    se = ((preds - targets) ** 2)[mask]  # [valid steps, F]
    expected = se.sum() / se.size
    np.testing.assert_allclose(losses.mse(preds, targets, mask), expected, **TOL)
    full = np.broadcast_to(mask[..., None], preds.shape)
    np.testing.assert_allclose(losses.mse(preds, targets, full), expected, **TOL)


def test_cross_entropy_matches_numpy():
    _, _, logits, labels, lengths = ragged()
    np.testing.assert_allclose(
        losses.cross_entropy(logits, labels), np_nll(logits, labels).mean(), **TOL
    )
    mask = valid_mask(lengths, logits.shape[1])
    np.testing.assert_allclose(
        losses.cross_entropy(logits, labels, mask), np_nll(logits, labels)[mask].mean(), **TOL
    )


def test_cross_entropy_accepts_log_probabilities():
    _, _, logits, labels, _ = ragged()
    np.testing.assert_allclose(
        losses.cross_entropy(np_log_softmax(logits), labels),
        losses.cross_entropy(logits, labels),
        **TOL,
    )


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    # d/dz of mean_n -log softmax(z_n)[y_n] is (softmax(z_n) - onehot(y_n)) / N.
    logits, labels = RNG.normal(size=(5, 4)), RNG.integers(0, 4, size=5)
    grad = jax.grad(losses.cross_entropy)(jnp.asarray(logits), jnp.asarray(labels))
    expected = (np.exp(np_log_softmax(logits)) - np.eye(4)[labels]) / 5
    np.testing.assert_allclose(grad, expected, **TOL)


def test_accuracy_matches_numpy():
    _, _, logits, labels, lengths = ragged()
    labels[0, :3] = logits[0, :3].argmax(-1)  # make sure some hits exist
    mask = valid_mask(lengths, logits.shape[1])
    hits = logits.argmax(-1) == labels
    np.testing.assert_allclose(losses.accuracy(logits, labels), hits.mean(), rtol=1e-6)
    np.testing.assert_allclose(losses.accuracy(logits, labels, mask), hits[mask].mean(), rtol=1e-6)


def test_bits_per_char_and_perplexity_of_uniform_model():
    # A uniform guess over V symbols costs ln V nats = log2 V bits, perplexity V.
    V = 37
    logits, labels = np.zeros((6, V)), RNG.integers(0, V, size=6)
    ce = losses.cross_entropy(logits, labels)
    np.testing.assert_allclose(ce, math.log(V), **TOL)
    np.testing.assert_allclose(losses.bits_per_char(ce), math.log2(V), **TOL)
    np.testing.assert_allclose(losses.perplexity(ce), V, rtol=1e-12)


# ----------------------------------------------------------------------------
# Padding never counts
# ----------------------------------------------------------------------------


def poison(x, mask, value):
    """Copy of `x` with `value` at every padded position (mask False)."""
    x = np.array(x, dtype=np.result_type(x, type(value)))
    x[~mask] = value
    return x


def test_masked_mse_and_its_gradient_ignore_padding():
    preds, targets, _, _, lengths = ragged()
    mask = valid_mask(lengths, preds.shape[1])
    f = jax.value_and_grad(losses.mse)
    loss, grad = f(jnp.asarray(preds), jnp.asarray(targets), mask)
    for value in (1e6, np.nan, np.inf):
        loss2, grad2 = f(
            jnp.asarray(poison(preds, mask, value)), jnp.asarray(poison(targets, mask, value)), mask
        )
        np.testing.assert_allclose(loss2, loss, **TOL)
        np.testing.assert_allclose(grad2, grad, **TOL)
    assert np.all(np.asarray(grad)[~mask] == 0)


def test_masked_cross_entropy_and_its_gradient_ignore_padding():
    _, _, logits, labels, lengths = ragged()
    mask = valid_mask(lengths, logits.shape[1])
    f = jax.value_and_grad(losses.cross_entropy)
    loss, grad = f(jnp.asarray(logits), jnp.asarray(labels), mask)
    bad_labels = poison(labels, mask, -1)  # typical padding id, out of range
    for value in (1e6, np.nan, -np.inf):
        loss2, grad2 = f(jnp.asarray(poison(logits, mask, value)), jnp.asarray(bad_labels), mask)
        np.testing.assert_allclose(loss2, loss, **TOL)
        np.testing.assert_allclose(grad2, grad, **TOL)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_many_to_many_ignores_padding(loss, reduction):
    preds, targets, logits, labels, lengths = ragged()
    mask = valid_mask(lengths, preds.shape[1])
    x, y = (preds, targets) if loss == "mse" else (logits, labels)
    f = jax.value_and_grad(
        lambda x: losses.many_to_many(x, y, lengths, loss=loss, reduction=reduction)
    )
    value, grad = f(jnp.asarray(x))
    y = poison(y, mask, 10**6) if loss == "cross_entropy" else poison(y, mask, np.nan)
    f2 = jax.value_and_grad(
        lambda x: losses.many_to_many(x, y, lengths, loss=loss, reduction=reduction)
    )
    value2, grad2 = f2(jnp.asarray(poison(x, mask, np.nan)))
    np.testing.assert_allclose(value2, value, **TOL)
    np.testing.assert_allclose(grad2, grad, **TOL)


def test_many_to_one_ignores_steps_after_the_length():
    preds, _, _, _, lengths = ragged()  # lengths (6, 3, 1, 0)
    targets = RNG.normal(size=(4, preds.shape[2]))
    mask = valid_mask(lengths, preds.shape[1])
    a = losses.many_to_one(preds, targets, lengths)
    b = losses.many_to_one(poison(preds, mask, np.nan), poison(targets, lengths > 0, 1e6), lengths)
    np.testing.assert_allclose(b, a, **TOL)
    # The empty sequence counts for nothing: the mean is over the other three.
    last = preds[np.arange(3), lengths[:3] - 1]
    np.testing.assert_allclose(a, np.mean((last - targets[:3]) ** 2), **TOL)


# ----------------------------------------------------------------------------
# The three usage patterns against NumPy
# ----------------------------------------------------------------------------


def test_many_to_one_matches_numpy():
    preds, _, logits, _, _ = ragged()
    lengths = np.array([6, 3, 1, 2])
    last = lambda ys: ys[np.arange(4), lengths - 1]  # noqa: E731
    targets = RNG.normal(size=(4, preds.shape[2]))
    np.testing.assert_allclose(
        losses.many_to_one(preds, targets, lengths), np.mean((last(preds) - targets) ** 2), **TOL
    )
    np.testing.assert_allclose(  # no lengths: the last step of every sequence
        losses.many_to_one(preds, targets), np.mean((preds[:, -1] - targets) ** 2), **TOL
    )
    classes = RNG.integers(0, logits.shape[2], size=4)
    np.testing.assert_allclose(
        losses.many_to_one(logits, classes, lengths, loss="cross_entropy"),
        np_nll(last(logits), classes).mean(),
        **TOL,
    )
    np.testing.assert_allclose(
        losses.many_to_one(logits, classes, lengths, loss=losses.cross_entropy),
        np_nll(last(logits), classes).mean(),
        **TOL,
    )


def test_many_to_many_matches_numpy():
    preds, targets, logits, labels, lengths = ragged()
    B, T = preds.shape[:2]
    mask = valid_mask(lengths, T)
    per_step_se = ((preds - targets) ** 2).mean(-1)
    per_step_ce = np_nll(logits, labels)
    for per_step, (x, y, name) in [
        (per_step_se, (preds, targets, "mse")),
        (per_step_ce, (logits, labels, "cross_entropy")),
    ]:
        mean = losses.many_to_many(x, y, lengths, loss=name)
        total = losses.many_to_many(x, y, lengths, loss=name, reduction="sum")
        np.testing.assert_allclose(mean, per_step[mask].mean(), **TOL)
        np.testing.assert_allclose(total, per_step[mask].sum() / B, **TOL)
    # An extra mask is combined with the lengths.
    extra = RNG.random((B, T)) < 0.5
    extra[0, 0] = True
    np.testing.assert_allclose(
        losses.many_to_many(logits, labels, lengths, mask=extra, loss="cross_entropy"),
        per_step_ce[mask & extra].mean(),
        **TOL,
    )
    # A callable per-step loss (absolute error) is reduced the same way.
    mae = lambda p, t: jnp.abs(p - t).sum(-1)  # noqa: E731
    np.testing.assert_allclose(
        losses.many_to_many(preds, targets, lengths, loss=mae),
        np.abs(preds - targets).sum(-1)[mask].mean(),
        **TOL,
    )


def test_many_to_many_is_jittable():
    preds, targets, _, _, lengths = ragged()
    f = jax.jit(lambda p, t, n: losses.many_to_many(p, t, n, reduction="sum"))
    np.testing.assert_allclose(
        f(preds, targets, lengths),
        losses.many_to_many(preds, targets, lengths, reduction="sum"),
        **TOL,
    )


def test_next_token_matches_numpy_in_both_layouts():
    B, T, V = 3, 5, 7
    logits = RNG.normal(size=(B, T, V))
    window = RNG.integers(0, V, size=(B, T + 1))  # model read window[:, :-1]
    np.testing.assert_allclose(
        losses.next_token(logits, window), np_nll(logits, window[:, 1:]).mean(), **TOL
    )
    read = window[:, :-1]  # the same tokens the model read: last logit unscored
    np.testing.assert_allclose(
        losses.next_token(logits, read), np_nll(logits[:, :-1], read[:, 1:]).mean(), **TOL
    )
    # With lengths n, the n - 1 predictions of each row count.
    lengths = np.array([6, 2, 1])
    nll = np_nll(logits, window[:, 1:])
    expected = np.concatenate([nll[0, :5], nll[1, :1]]).mean()
    np.testing.assert_allclose(losses.next_token(logits, window, lengths), expected, **TOL)


def test_sequence_mask():
    np.testing.assert_array_equal(
        losses.sequence_mask(np.array([2, 0, 3]), 3),
        [[True, True, False], [False, False, False], [True, True, True]],
    )


# ----------------------------------------------------------------------------
# Clear errors
# ----------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="same shape"):
        losses.mse(x, np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="mask must have the shape"):
        losses.mse(x, x, np.ones((3,), bool))
    with pytest.raises(TypeError, match="integer token ids"):
        losses.cross_entropy(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"labels.shape \+ \[num_classes\]"):
        losses.cross_entropy(x, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, vocab_size\) = \[0, 4\)"):
        losses.cross_entropy(x, np.full((2, 3), 4))
    with pytest.raises(ValueError, match="reduction"):
        losses.many_to_many(x, x, reduction="max")
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.many_to_many(x, x, loss="hinge")
    with pytest.raises(ValueError, match=r"tokens must be \[B, T \+ 1\]"):
        losses.next_token(x, np.zeros((2, 7), int))
    with pytest.raises(ValueError, match="preds must be"):
        losses.many_to_one(x[0], x[:, 0])

"""Each built-in task is learnable: a short run lowers the loss well below its baseline.

Short sequences and small models keep the suite fast; the long-range
versions are the experiments' business (experiments/long_range_memory.py).
Float32 throughout, as users train.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import lstmjax as lj
from lstmjax import losses, tasks, train

# Real models trained on the tasks: the integration tier (`pytest -m integration`, run by CI as its
# second command), not the default run.
pytestmark = pytest.mark.integration


def fit_steps(params, apply_fn, loss_fn, batch_fn, steps, lr=1e-2):
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    step = train.make_train_step(apply_fn, loss_fn, optimizer)
    state = train.init_state(params, optimizer)
    for n in range(steps):
        state, _ = step(state, batch_fn(n))
    return state.params


def sequence_model(cell, input_size, output_size):
    """params = (cell params, readout params); apply -> per-step outputs [B, T, out]."""
    head = lj.dense(output_size)
    k1, k2 = jax.random.split(jax.random.key(1))
    params = (cell.init(k1, input_size), head.init(k2, cell.output_size))

    def apply(params, xs):
        ys, _ = lj.unroll(cell, params[0], xs)
        return head.apply(params[1], ys)

    return params, apply


def test_copy_task_below_memoryless_baseline():
    delay, copy_length = 5, 5  # five symbols to recall, so 400 steps suffice
    params, apply = sequence_model(lj.lstm(48), tasks.COPY_VOCAB_SIZE, tasks.COPY_NUM_SYMBOLS + 2)

    def batch(n):
        xs, ys = tasks.copy_task(
            jax.random.fold_in(jax.random.key(2), n), 64, delay, copy_length=copy_length
        )
        return jax.nn.one_hot(xs, tasks.COPY_VOCAB_SIZE, dtype=jnp.float32), ys

    def loss_fn(logits, ys):
        return losses.cross_entropy(logits, ys)

    params = fit_steps(params, apply, loss_fn, batch, 400)
    xs, ys = batch(10_000)
    ce = float(loss_fn(apply(params, xs), ys))
    assert ce < 0.5 * tasks.copy_baseline_cross_entropy(delay, copy_length=copy_length), ce


def test_temporal_order_beats_chance():
    length = 20
    cell = lj.lstm(32)
    params, apply_steps = sequence_model(cell, tasks.ORDER_VOCAB_SIZE, tasks.ORDER_NUM_CLASSES)
    apply = lambda p, xs: apply_steps(p, xs)[:, -1]  # noqa: E731  many-to-one

    def batch(n):
        xs, ys = tasks.temporal_order(jax.random.fold_in(jax.random.key(3), n), 64, length)
        return xs.astype(jnp.float32), ys

    params = fit_steps(params, apply, losses.cross_entropy, batch, 300)
    xs, ys = batch(10_000)
    logits = apply(params, xs)
    assert float(losses.cross_entropy(logits, ys)) < 0.5 * tasks.ORDER_BASELINE_CROSS_ENTROPY
    assert float(losses.accuracy(logits, ys)) > 0.9


def test_char_model_below_unigram_entropy():
    data = tasks.char_corpus(max_chars=60_000)
    model = lj.lm.language_model(data.vocab.size, 16, lj.gru(64))
    params = model.init(jax.random.key(4))
    train_tokens = jnp.asarray(data.train)

    def batch(n):
        windows = tasks.random_windows(
            jax.random.fold_in(jax.random.key(5), n), train_tokens, 32, 40
        )
        return windows, windows

    def loss_fn(logits, windows):
        return losses.next_token(logits, windows)

    apply = lambda p, windows: model.apply(p, windows[:, :-1])[0]  # noqa: E731
    params = fit_steps(params, apply, loss_fn, batch, 150)
    valid = tasks.random_windows(jax.random.key(6), jnp.asarray(data.valid), 64, 40)
    bits = float(losses.bits_per_char(loss_fn(apply(params, valid), valid)))
    baseline = float(tasks.unigram_entropy_bits(data.train, data.vocab.size))
    assert bits < baseline - 0.5, (bits, baseline)


def test_pendulum_one_step_prediction_beats_persistence():
    params, apply_steps = sequence_model(lj.rnn(32), 2, 2)

    def batch(n):
        traj = tasks.pendulum_trajectories(jax.random.fold_in(jax.random.key(7), n), 32, 30)
        return traj[:, :-1], traj[:, 1:] - traj[:, :-1]  # predict the increment

    params = fit_steps(params, apply_steps, losses.mse, batch, 300, lr=3e-3)
    xs, increments = batch(10_000)
    model_mse = float(losses.mse(apply_steps(params, xs), increments))
    persistence = float(jnp.mean(increments**2))  # "no change" predicts a zero increment
    assert model_mse < 0.1 * persistence, (model_mse, persistence)

"""Task generators: shapes, dtypes, seeded determinism, the documented
baselines measured on the data, and the order of the RK4 integrator."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

from lstmjax import losses, tasks

KEY = jax.random.key(0)
OTHER = jax.random.key(1)


def same(f, *args, **kw):
    """Assert that `f` is a pure function of its key: same key, same data."""
    a, b = f(KEY, *args, **kw), f(KEY, *args, **kw)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    c = f(OTHER, *args, **kw)
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(c), strict=True)
    ), "a different key gave the same data"
    return a


# ----------------------------------------------------------------------------
# Adding problem
# ----------------------------------------------------------------------------


def test_adding_problem_layout():
    B, T = 64, 11
    xs, ys = same(tasks.adding_problem, B, T)
    assert xs.shape == (B, T, 2) and xs.dtype == jnp.float32
    assert ys.shape == (B, 1) and ys.dtype == jnp.float32
    values, markers = np.asarray(xs[..., 0]), np.asarray(xs[..., 1])
    assert values.min() >= 0 and values.max() <= 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    half = T // 2
    np.testing.assert_array_equal(markers[:, :half].sum(1), 1)  # one marker per half
    np.testing.assert_array_equal(markers[:, half:].sum(1), 1)
    np.testing.assert_allclose(ys[:, 0], (values * markers).sum(1), rtol=1e-6)


def test_adding_problem_baseline_is_one_sixth():
    # Predicting 1 for every sequence: MSE = Var(U1 + U2) = 1/6. The sample
    # mean of (S - 1)^2 over N = 200k has std sqrt((1/15 - 1/36) / N) = 4.4e-4.
    _, ys = tasks.adding_problem(KEY, 200_000, 4, dtype=jnp.float64)
    mse = losses.mse(ys, jnp.ones_like(ys))
    assert tasks.ADDING_BASELINE_MSE == pytest.approx(1 / 6)
    assert float(mse) == pytest.approx(tasks.ADDING_BASELINE_MSE, abs=2e-3)
    assert float(jnp.mean(ys)) == pytest.approx(1.0, abs=5e-3)  # 1 is the best constant


def test_adding_problem_rejects_bad_sizes():
    with pytest.raises(ValueError, match="length must be an int >= 2"):
        tasks.adding_problem(KEY, 4, 1)
    with pytest.raises(ValueError, match="batch_size"):
        tasks.adding_problem(KEY, 0, 10)


# ----------------------------------------------------------------------------
# Copy task
# ----------------------------------------------------------------------------


def test_copy_task_layout():
    B, delay = 16, 7
    xs, ys = same(tasks.copy_task, B, delay)
    T = delay + 20
    assert xs.shape == ys.shape == (B, T) and xs.dtype == ys.dtype == jnp.int32
    xs, ys = np.asarray(xs), np.asarray(ys)
    symbols = xs[:, :10]
    assert symbols.min() >= 0 and symbols.max() < tasks.COPY_NUM_SYMBOLS
    np.testing.assert_array_equal(xs[:, 10 : delay + 9], tasks.COPY_BLANK)  # delay - 1 blanks
    np.testing.assert_array_equal(xs[:, delay + 9], tasks.COPY_DELIMITER)
    np.testing.assert_array_equal(xs[:, delay + 10 :], tasks.COPY_BLANK)
    np.testing.assert_array_equal(ys[:, : delay + 10], tasks.COPY_BLANK)
    np.testing.assert_array_equal(ys[:, delay + 10 :], symbols)
    mask = np.asarray(tasks.copy_output_mask(delay))
    assert mask.shape == (T,) and mask.sum() == 10 and mask[-10:].all()


@pytest.mark.parametrize("delay", [1, 30])
def test_copy_task_memoryless_baseline_formula(delay):
    # The memoryless predictor: blank with probability 1 for the first
    # delay + 10 steps, uniform over the 8 symbols for the last 10. Its mean
    # cross-entropy over all steps, computed with the library's loss on real
    # batches, must equal the documented 10 ln 8 / (delay + 20).
    B, T, V = 32, delay + 20, tasks.COPY_VOCAB_SIZE
    _, ys = tasks.copy_task(KEY, B, delay)
    probs = np.zeros((T, V))
    probs[: delay + 10, tasks.COPY_BLANK] = 1.0
    probs[delay + 10 :, : tasks.COPY_NUM_SYMBOLS] = 1.0 / tasks.COPY_NUM_SYMBOLS
    with np.errstate(divide="ignore"):
        logp = np.log(probs)  # -inf where the probability is 0
    logits = jnp.broadcast_to(jnp.asarray(logp)[None], (B, T, V))
    ce = losses.many_to_many(logits, ys, loss="cross_entropy")
    expected = 10 * math.log(8) / (delay + 20)
    assert tasks.copy_baseline_cross_entropy(delay) == pytest.approx(expected, rel=1e-15)
    np.testing.assert_allclose(ce, expected, rtol=1e-12)


def test_copy_task_symbols_are_uniform():
    # The memoryless strategy guesses uniformly because the symbols are: their
    # empirical entropy is ln 8 (to sampling error, N = 80k draws).
    xs, _ = tasks.copy_task(KEY, 8000, 1)
    counts = np.bincount(np.asarray(xs[:, :10]).ravel(), minlength=8)
    p = counts / counts.sum()
    assert -(p * np.log(p)).sum() == pytest.approx(math.log(8), abs=2e-3)


# ----------------------------------------------------------------------------
# Temporal order
# ----------------------------------------------------------------------------


def test_temporal_order_layout_and_labels():
    B, T = 256, 40
    xs, ys = same(tasks.temporal_order, B, T)
    assert xs.shape == (B, T, tasks.ORDER_VOCAB_SIZE) and xs.dtype == jnp.float32
    assert ys.shape == (B,) and ys.dtype == jnp.int32
    np.testing.assert_array_equal(xs.sum(-1), 1)  # one-hot
    ids = np.asarray(xs.argmax(-1))
    ids2, ys2 = tasks.temporal_order(KEY, B, T, one_hot=False)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(ys, ys2)
    sym = np.array(tasks.ORDER_SYMBOLS)[ids]
    assert (sym[:, 0] == "B").all() and (sym[:, -1] == "E").all()
    (lo1, hi1), (lo2, hi2) = tasks.order_positions(T)
    assert (lo1, hi1, lo2, hi2) == (4, 8, 20, 24)
    for b in range(B):
        where = np.flatnonzero(np.isin(sym[b], ["X", "Y"]))
        assert len(where) == 2 and lo1 <= where[0] < hi1 and lo2 <= where[1] < hi2
        label = tasks.ORDER_CLASSES.index("".join(sym[b, where]))
        assert label == ys[b]


def test_temporal_order_baselines():
    # Classes are equally likely: the best constant guess is right 1/4 of the
    # time and the label entropy (best constant cross-entropy) is ln 4.
    _, ys = tasks.temporal_order(KEY, 40_000, 10, one_hot=False)
    counts = np.bincount(np.asarray(ys), minlength=4)
    p = counts / counts.sum()
    assert p.max() == pytest.approx(tasks.ORDER_BASELINE_ACCURACY, abs=0.01)
    assert -(p * np.log(p)).sum() == pytest.approx(tasks.ORDER_BASELINE_CROSS_ENTROPY, abs=1e-3)
    uniform = jnp.zeros((ys.shape[0], 4))
    np.testing.assert_allclose(losses.cross_entropy(uniform, ys), math.log(4), rtol=1e-12)


def test_temporal_order_rejects_short_sequences():
    with pytest.raises(ValueError, match="length must be an int >= 10"):
        tasks.temporal_order(KEY, 2, 9)


# ----------------------------------------------------------------------------
# Text corpus
# ----------------------------------------------------------------------------


def test_stdlib_text_is_deterministic_real_python():
    text = tasks.stdlib_text(20_000)
    assert len(text) == 20_000 and text == tasks.stdlib_text(20_000)
    first = tasks.stdlib_files()[0].read_text(encoding="utf-8")
    assert text.startswith(first[:1000])
    assert "def " in text and "import " in text
    assert all("test" not in p.parts for p in tasks.stdlib_files())


def test_vocab_round_trip_and_unknown_characters():
    vocab = tasks.build_vocab("hello wörld\n")
    assert vocab.chars == tuple(sorted(set("hello wörld\n"))) and vocab.size == 10
    ids = vocab.encode("löw\nhe")
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [vocab.chars.index(c) for c in "löw\nhe"])
    assert vocab.decode(ids) == "löw\nhe"
    with pytest.raises(ValueError, match=r"not in the vocabulary.*'z'"):
        vocab.encode("hez")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 10\)"):
        vocab.decode([10])


def test_char_corpus_split_and_unigram_baseline():
    data = tasks.char_corpus(max_chars=30_000, valid_fraction=0.1)
    assert len(data.train) == 27_000 and len(data.valid) == 3_000
    assert data.vocab.decode(data.train[:50]) == tasks.stdlib_text(50)
    # The unigram baseline (entropy in bits) is the cross-entropy of the
    # frequency model on the train split, computed here through the loss.
    bits = tasks.unigram_entropy_bits(data.train, data.vocab.size)
    counts = np.bincount(data.train, minlength=data.vocab.size)
    with np.errstate(divide="ignore"):
        logp = np.log(counts / counts.sum())
    ce = losses.cross_entropy(
        jnp.broadcast_to(logp, (len(data.train), data.vocab.size)), data.train
    )
    np.testing.assert_allclose(losses.bits_per_char(ce), bits, rtol=1e-10)
    assert 3.0 < bits < 6.0  # Python source: far below log2(V) but well above 0


def test_unigram_entropy_hand_values():
    assert tasks.unigram_entropy_bits(np.zeros(10, int), 3) == 0.0
    assert tasks.unigram_entropy_bits(np.array([0, 1] * 5), 2) == pytest.approx(1.0)
    assert tasks.unigram_entropy_bits(np.array([0, 0, 1, 2]), 3) == pytest.approx(1.5)


def test_random_windows_are_contiguous_slices():
    tokens = np.arange(1000, dtype=np.int32)  # a window of arange is arange
    w = same(tasks.random_windows, tokens, 8, 16)
    assert w.shape == (8, 17) and w.dtype == jnp.int32
    np.testing.assert_array_equal(np.diff(np.asarray(w), axis=1), 1)
    assert w.min() >= 0 and w.max() < 1000
    jitted = jax.jit(tasks.random_windows, static_argnums=(2, 3))(KEY, jnp.asarray(tokens), 8, 16)
    np.testing.assert_array_equal(jitted, w)


def test_stream_chunks_continue_rows_for_truncated_bptt():
    N, B, T = 103, 4, 6
    tokens = np.arange(N)
    rows = np.asarray(tasks.stream_rows(tokens, B))
    np.testing.assert_array_equal(rows, np.arange(100).reshape(4, 25))  # row b continues itself
    chunks = np.asarray(tasks.stream_chunks(tokens, B, T))
    assert chunks.shape == ((25 - 1) // T, B, T + 1)
    for k in range(chunks.shape[0]):
        np.testing.assert_array_equal(chunks[k], rows[:, k * T : k * T + T + 1])
    np.testing.assert_array_equal(chunks[1:, :, 0], chunks[:-1, :, -1])  # overlap of one token
    with pytest.raises(ValueError, match="too short"):
        tasks.stream_chunks(tokens, 50, 6)


# ----------------------------------------------------------------------------
# Dynamical systems and RK4
# ----------------------------------------------------------------------------


def oscillator(t, y):
    """x'' = -x as a first-order system; exact solution (cos t, -sin t)."""
    return jnp.stack([y[..., 1], -y[..., 0]], axis=-1)


def error_ratios(errors):
    return [errors[i] / errors[i + 1] for i in range(len(errors) - 1)]


def test_rk4_is_fourth_order_on_the_harmonic_oscillator():
    t_end = 2.0
    errors = []
    for n in (20, 40, 80):
        ys = tasks.rk4(oscillator, jnp.array([1.0, 0.0]), t_end / n, n)
        assert ys.shape == (n + 1, 2) and ys.dtype == jnp.float64
        exact = np.array([np.cos(t_end), -np.sin(t_end)])
        errors.append(float(np.max(np.abs(np.asarray(ys[-1]) - exact))))
    for ratio in error_ratios(errors):  # (1/2)^4 = 1/16 per halving
        assert 12 < ratio < 20, errors


def test_rk4_uses_time_in_non_autonomous_fields():
    # y' = cos(t), y(t0) = sin(t0): exact solution sin(t); order 4 as well.
    errors = []
    for n in (10, 20, 40):
        ys = tasks.rk4(
            lambda t, y: jnp.cos(t) * jnp.ones_like(y), jnp.array([np.sin(0.5)]), 2.0 / n, n, t0=0.5
        )
        errors.append(abs(float(ys[-1, 0]) - np.sin(2.5)))
    for ratio in error_ratios(errors):
        assert 12 < ratio < 20, errors


def test_rk4_is_fourth_order_on_lorenz():
    # Against a reference with a 32x smaller step, over one time unit.
    f, y0 = tasks.lorenz(), jnp.array([1.0, 1.0, 25.0])
    reference = tasks.rk4(f, y0, 1 / 6400, 6400)[-1]
    errors = [
        float(jnp.max(jnp.abs(tasks.rk4(f, y0, 1 / n, n)[-1] - reference))) for n in (200, 400)
    ]
    assert 12 < errors[0] / errors[1] < 20, errors


def test_pendulum_energy():
    # Undamped: energy E = w^2/2 - cos(theta) is conserved (to RK4 error);
    # damped: dE/dt = -damping * w^2 <= 0, so it never increases.
    def energy(traj):
        return 0.5 * traj[..., 1] ** 2 - np.cos(traj[..., 0])

    free = np.asarray(
        tasks.pendulum_trajectories(KEY, 4, 200, dt=0.05, damping=0.0, dtype=jnp.float64)
    )
    assert np.max(np.abs(energy(free) - energy(free[:, :1]))) < 1e-5
    damped = np.asarray(
        same(tasks.pendulum_trajectories, 4, 200, dt=0.05, damping=0.3, dtype=jnp.float64)
    )
    assert (np.diff(energy(damped), axis=1) <= 1e-12).all()
    assert (energy(damped[:, -1]) < energy(damped[:, 0])).all()


def test_trajectory_generators_shapes_and_attractor():
    p = tasks.pendulum_trajectories(KEY, 3, 50)
    assert p.shape == (3, 50, 2) and p.dtype == jnp.float32
    lz = np.asarray(same(tasks.lorenz_trajectories, 3, 200, burn_in=300))
    assert lz.shape == (3, 200, 3)
    # On the attractor: bounded, with z positive.
    assert np.abs(lz[..., :2]).max() < 30 and 0 < lz[..., 2].min() and lz[..., 2].max() < 55
    np.testing.assert_allclose(
        tasks.persistence_mse(lz), np.mean((lz[:, 1:] - lz[:, :-1]) ** 2), rtol=1e-6
    )


# ----------------------------------------------------------------------------
# State tracking: running modular addition (parity for m = 2)
# ----------------------------------------------------------------------------


def running_sums(xs: np.ndarray, modulus: int) -> np.ndarray:
    """The reference: a Python loop over each row, the residue kept by hand."""
    out = np.zeros_like(xs)
    for b, row in enumerate(xs.tolist()):
        total = 0
        for t, x in enumerate(row):
            total = (total + x) % modulus
            out[b, t] = total
    return out


@pytest.mark.parametrize("modulus", [2, 3, 5])
def test_modular_addition_is_the_running_sum(modulus):
    B, T = 8, 37
    xs, ys = same(tasks.modular_addition, B, T, modulus=modulus)
    assert xs.shape == ys.shape == (B, T) and xs.dtype == ys.dtype == jnp.int32
    xs, ys = np.asarray(xs), np.asarray(ys)
    assert set(np.unique(xs)) == set(range(modulus))  # every token occurs (296 draws)
    np.testing.assert_array_equal(ys, running_sums(xs, modulus))


def test_parity_is_the_xor_of_the_bits_so_far():
    # m = 2 (the default): a second reference, XOR accumulated over the bits.
    xs, ys = tasks.modular_addition(KEY, 4, 64)
    np.testing.assert_array_equal(ys, np.bitwise_xor.accumulate(np.asarray(xs), axis=1))


def test_modular_addition_targets_are_uniform_given_the_token():
    # The documented baseline 1/m: after the first step the target is uniform
    # whatever the current token, so no token-only predictor beats chance.
    # Each of the 9 cells holds about 40k draws: a frequency's std is 2e-3.
    m = 3
    xs, ys = tasks.modular_addition(KEY, 2000, 61, modulus=m)
    xs, ys = np.asarray(xs)[:, 1:], np.asarray(ys)[:, 1:]
    for token in range(m):
        freq = np.bincount(ys[xs == token], minlength=m) / np.sum(xs == token)
        np.testing.assert_allclose(freq, 1 / m, atol=0.01)


def test_modular_addition_rejects_bad_moduli():
    assert_clear(ValueError, lambda: tasks.modular_addition(KEY, 2, 5, modulus=1),
                 r"modulus must be an int >= 2", r"got 1")  # fmt: skip
    assert_clear(ValueError, lambda: tasks.modular_addition(KEY, 2, 5, modulus=2**31),
                 r"modulus must be at most 2\^30", r"got 2147483648")  # fmt: skip
    assert_clear(TypeError, lambda: tasks.modular_addition(KEY, 2, 5, modulus=2.0),
                 r"modulus must be an int", r"float")  # fmt: skip


# ----------------------------------------------------------------------------
# Multi-query associative recall
# ----------------------------------------------------------------------------


def test_associative_recall_answers_every_query_from_its_pairs():
    B, N, Q, K, V = 16, 6, 4, 8, 5
    xs, ys = same(tasks.associative_recall, B, N, num_queries=Q, num_keys=K, num_values=V)
    assert xs.shape == ys.shape == (B, 2 * N + Q) and xs.dtype == ys.dtype == jnp.int32
    xs, ys = np.asarray(xs), np.asarray(ys)
    for row_x, row_y in zip(xs.tolist(), ys.tolist(), strict=True):
        keys, values, queries = row_x[0 : 2 * N : 2], row_x[1 : 2 * N : 2], row_x[2 * N :]
        assert len(set(keys)) == N and all(0 <= k < K for k in keys)
        assert all(K <= v < K + V for v in values)
        assert len(set(queries)) == Q and set(queries) <= set(keys)
        table = dict(zip(keys, values, strict=True))  # the reference: a lookup by hand
        assert row_y[: 2 * N] == [tasks.RECALL_NO_TARGET] * (2 * N)
        assert row_y[2 * N :] == [table[q] for q in queries]
    # The queries come in random order, not in the order of the pairs.
    first_query_is_first_key = xs[:, 2 * N] == xs[:, 0]
    assert not first_query_is_first_key.all()


def test_associative_recall_default_queries_every_pair_once():
    xs, ys = tasks.associative_recall(KEY, 4, 3)
    xs, ys = np.asarray(xs), np.asarray(ys)
    assert xs.shape == (4, 9) and (ys[:, 6:] >= 32).all() and (ys[:, :6] == -1).all()
    for row in xs:
        assert sorted(row[6:]) == sorted(row[0:6:2])  # a permutation of the keys
    # The mask `ys >= 0` picks out exactly the query steps for the loss.
    logits = jax.nn.one_hot(jnp.where(ys >= 0, ys, 0), 64) * 50.0
    assert float(losses.accuracy(logits, jnp.asarray(ys), jnp.asarray(ys) >= 0)) == 1.0


def test_associative_recall_rejects_impossible_sizes():
    assert_clear(ValueError, lambda: tasks.associative_recall(KEY, 2, 9, num_keys=8),
                 r"num_pairs must be at most num_keys", r"num_pairs=9, num_keys=8")  # fmt: skip
    assert_clear(ValueError, lambda: tasks.associative_recall(KEY, 2, 3, num_queries=4),
                 r"num_queries must be at most num_pairs", r"num_queries=4")  # fmt: skip
    assert_clear(ValueError, lambda: tasks.associative_recall(KEY, 2, 0),
                 r"num_pairs must be an int >= 1", r"got 0")  # fmt: skip

"""Multi-query associative recall: key-value pairs, then queries for the values."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lstmjax._checks import check_size
from lstmjax._typing import Array, PRNGKey

RECALL_NO_TARGET = -1  # the target at the steps that are not queries


def _check_recall_sizes(num_pairs, num_queries, num_keys, num_values) -> tuple[int, int, int, int]:
    num_pairs = check_size("num_pairs", num_pairs)
    num_queries = num_pairs if num_queries is None else check_size("num_queries", num_queries)
    num_keys = check_size("num_keys", num_keys)
    num_values = check_size("num_values", num_values)
    if num_pairs > num_keys:
        raise ValueError(
            f"associative_recall: the keys of a sequence are distinct, so num_pairs must be at "
            f"most num_keys; got num_pairs={num_pairs}, num_keys={num_keys}."
        )
    if num_queries > num_pairs:
        raise ValueError(
            f"associative_recall: each pair is queried at most once, so num_queries must be at "
            f"most num_pairs; got num_queries={num_queries}, num_pairs={num_pairs}."
        )
    return num_pairs, num_queries, num_keys, num_values


def associative_recall(
    key: PRNGKey,
    batch_size: int,
    num_pairs: int,
    *,
    num_queries=None,
    num_keys: int = 32,
    num_values: int = 32,
) -> tuple[Array, Array]:
    """Batches of multi-query associative recall (MQAR), as int token ids.

    Source: Arora et al. (2023, "Zoology: Measuring and Improving Recall in
    Efficient Language Models"), the recall task that Beck et al. (2024,
    "xLSTM", section 4.1) use to compare memories. A sequence of
    T = 2 N + Q steps (N = `num_pairs`, Q = `num_queries`):

        input : k_1 v_1 k_2 v_2 ... k_N v_N   q_1 ... q_Q
        target: (2 N steps without target)    v(q_1) ... v(q_Q)

    The N keys of a sequence are distinct, drawn from `num_keys` key tokens
    (ids 0 .. num_keys - 1); each value is drawn uniformly, independently,
    from `num_values` value tokens (ids num_keys .. num_keys + num_values -
    1), so the vocabulary has `num_keys + num_values` tokens. The queries
    are Q distinct keys of the sequence in random order; the target at
    query j is the value paired with q_j. Steps without a target hold
    `RECALL_NO_TARGET` (-1): train and score with the mask `ys >= 0`, e.g.
    `losses.cross_entropy(logits, ys, ys >= 0)`.

    Baseline: without the pairs, a value guess is right with probability
    1 / num_values; guessing among the values seen in the sequence, about
    1 / N.

    Args:
      key: a `jax.random` key.
      batch_size: B.
      num_pairs: N, key-value pairs per sequence (at most `num_keys`).
      num_queries: Q, queries per sequence (at most N); None means N.
      num_keys: key tokens.
      num_values: value tokens.

    Returns:
      `(xs, ys)`, both int32 `[B, 2 N + Q]`: token ids, and at the last Q
      steps the value id to recall (`RECALL_NO_TARGET` elsewhere).
    """
    batch_size = check_size("batch_size", batch_size)
    sizes = _check_recall_sizes(num_pairs, num_queries, num_keys, num_values)
    return _associative_recall(key, batch_size, *sizes)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _associative_recall(key, batch_size, num_pairs, num_queries, num_keys, num_values):
    k_keys, k_values, k_order = jax.random.split(key, 3)
    B, N = batch_size, num_pairs
    # Distinct keys: the first N of a random permutation of the key tokens (per row).
    keys = jnp.argsort(jax.random.uniform(k_keys, (B, num_keys)), axis=1)[:, :N]
    values = num_keys + jax.random.randint(k_values, (B, N), 0, num_values)
    # Distinct queries: the first Q pairs of a random permutation of the N pairs.
    order = jnp.argsort(jax.random.uniform(k_order, (B, N)), axis=1)[:, :num_queries]
    queries = jnp.take_along_axis(keys, order, axis=1)
    answers = jnp.take_along_axis(values, order, axis=1)
    pairs = jnp.stack([keys, values], axis=2).reshape(B, 2 * N)
    xs = jnp.concatenate([pairs, queries], axis=1).astype(jnp.int32)
    none = jnp.full((B, 2 * N), RECALL_NO_TARGET)
    ys = jnp.concatenate([none, answers], axis=1).astype(jnp.int32)
    return xs, ys

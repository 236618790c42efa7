"""The copy (memory) task: recall a short symbol string after a long delay."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lstmjax._checks import check_size, jit_with_options
from lstmjax._typing import Array, PRNGKey

COPY_NUM_SYMBOLS = 8  # symbols to remember are ids 0..7
COPY_BLANK = 8  # id of the blank
COPY_DELIMITER = 9  # id of the "start recalling now" marker
COPY_VOCAB_SIZE = 10
COPY_LENGTH = 10  # symbols to remember


@jit_with_options("batch_size", "delay", "num_symbols", "copy_length")
def copy_task(
    key: PRNGKey,
    batch_size: int,
    delay: int,
    *,
    num_symbols: int = COPY_NUM_SYMBOLS,
    copy_length: int = COPY_LENGTH,
) -> tuple[Array, Array]:
    """Batches of the copy task, as int token ids.

    Source: Arjovsky, Shah & Bengio (2016), section 4.1 (after Hochreiter &
    Schmidhuber 1997). With the defaults, a sequence of length `delay + 20`:

        input : s_1 .. s_10, (delay - 1) blanks, delimiter, 10 blanks
        target: (delay + 10) blanks,                        s_1 .. s_10

    where the s_i are drawn uniformly, independently, from `num_symbols`
    categories (ids 0..num_symbols-1); the blank is id `num_symbols` and the
    delimiter `num_symbols + 1`, so the vocabulary has `num_symbols + 2`
    tokens (8, 9 and 10 with the defaults, as in the paper). The loss is the
    cross-entropy averaged over all `delay + 20` steps; one-hot inputs are
    `jax.nn.one_hot(xs, COPY_VOCAB_SIZE)`.

    Baseline: `copy_baseline_cross_entropy(delay)`.

    Args:
      key: a `jax.random` key.
      batch_size: B.
      delay: T >= 1, the steps from the end of the string to the first recall.
      num_symbols: categories of the symbols to remember.
      copy_length: symbols to remember.

    Returns:
      `(xs, ys)`, both int32 `[B, delay + 2 * copy_length]`.
    """
    batch_size = check_size("batch_size", batch_size)
    delay = check_size("delay", delay)
    num_symbols = check_size("num_symbols", num_symbols)
    copy_length = check_size("copy_length", copy_length)
    blank, delimiter = num_symbols, num_symbols + 1
    symbols = jax.random.randint(key, (batch_size, copy_length), 0, num_symbols, jnp.int32)
    gap = jnp.full((batch_size, delay - 1), blank, jnp.int32)
    mark = jnp.full((batch_size, 1), delimiter, jnp.int32)
    tail = jnp.full((batch_size, copy_length), blank, jnp.int32)
    xs = jnp.concatenate([symbols, gap, mark, tail], axis=1)
    wait = jnp.full((batch_size, delay + copy_length), blank, jnp.int32)
    ys = jnp.concatenate([wait, symbols], axis=1)
    return xs, ys


def copy_output_mask(delay: int, copy_length: int = COPY_LENGTH) -> Array:
    """The steps where the symbols are recalled, for recall accuracy.

    Returns:
      bool `[delay + 2 * copy_length]`, True on the last `copy_length` steps.
    """
    delay = check_size("delay", delay)
    copy_length = check_size("copy_length", copy_length)
    total = delay + 2 * copy_length
    return jnp.arange(total) >= total - copy_length


def copy_baseline_cross_entropy(
    delay: int, num_symbols: int = COPY_NUM_SYMBOLS, copy_length: int = COPY_LENGTH
) -> float:
    """Cross-entropy of the memoryless strategy, in nats per step.

    Without memory the best one can do is predict the blank with certainty
    for the first `delay + 10` steps (no loss) and a uniform guess over the
    symbols for the last 10 (ln 8 each): 10 ln 8 / (delay + 20).
    """
    return copy_length * math.log(num_symbols) / (delay + 2 * copy_length)

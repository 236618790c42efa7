"""The temporal order problem: classify the order of two distant symbols."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lstmjax._checks import check_bool, check_size, jit_with_options
from lstmjax._typing import Array, PRNGKey

# Token ids. a, b, c, d are noise; X and Y the relevant symbols; B and E mark
# the beginning and the end of a sequence.
ORDER_SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")
ORDER_VOCAB_SIZE = len(ORDER_SYMBOLS)
ORDER_CLASSES = ("XX", "XY", "YX", "YY")
ORDER_NUM_CLASSES = 4
ORDER_BASELINE_ACCURACY = 1.0 / 4.0  # a constant guess, classes being equally likely
ORDER_BASELINE_CROSS_ENTROPY = math.log(4.0)  # nats, predicting the uniform distribution

_X, _Y, _B, _E = 4, 5, 6, 7


def order_positions(length: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Half-open ranges of the two relevant positions for a sequence of `length`.

    The first lies in [T/10, 2T/10) and the second in [5T/10, 6T/10), which
    for T = 100 are close to Hochreiter & Schmidhuber's (10..20 and 50..60).
    """
    length = check_size("length", length, 10)
    first = (length // 10, max(2 * length // 10, length // 10 + 1))
    second = (5 * length // 10, max(6 * length // 10, 5 * length // 10 + 1))
    return first, second


@jit_with_options("batch_size", "length", "one_hot", "dtype")
def temporal_order(
    key: PRNGKey, batch_size: int, length: int, *, one_hot: bool = True, dtype=jnp.float32
) -> tuple[Array, Array]:
    """Batches of the temporal order problem.

    Source: Hochreiter & Schmidhuber (1997), experiment 6a, as used with
    growing T by Pascanu, Mikolov & Bengio (2013). A sequence of T symbols
    starts with B, ends with E, and is filled with noise symbols from
    {a, b, c, d}, except at two random positions (see `order_positions`),
    which hold X or Y. The class is the pair of relevant symbols in order:
    XX = 0, XY = 1, YX = 2, YY = 3.

    Baseline: the four classes are equally likely, so without the long-range
    information accuracy is `ORDER_BASELINE_ACCURACY` = 1/4 and the best
    cross-entropy `ORDER_BASELINE_CROSS_ENTROPY` = ln 4 nats.

    Args:
      key: a `jax.random` key.
      batch_size: B.
      length: T >= 10.
      one_hot: return one-hot float inputs (else int32 token ids).
      dtype: float dtype of the one-hot inputs.

    Returns:
      `(xs, ys)`: xs `[B, T, 8]` one-hot (or int32 `[B, T]` ids, see
      `ORDER_SYMBOLS`), ys int32 `[B]` class ids.
    """
    batch_size = check_size("batch_size", batch_size)
    one_hot = check_bool("one_hot", one_hot)
    (lo1, hi1), (lo2, hi2) = order_positions(length)
    k_noise, k_pos1, k_pos2, k_sym = jax.random.split(key, 4)
    ids = jax.random.randint(k_noise, (batch_size, length), 0, 4, jnp.int32)
    ids = ids.at[:, 0].set(_B).at[:, -1].set(_E)
    pos1 = jax.random.randint(k_pos1, (batch_size,), lo1, hi1)
    pos2 = jax.random.randint(k_pos2, (batch_size,), lo2, hi2)
    is_y = jax.random.bernoulli(k_sym, 0.5, (batch_size, 2)).astype(jnp.int32)
    rows = jnp.arange(batch_size)
    ids = ids.at[rows, pos1].set(_X + is_y[:, 0]).at[rows, pos2].set(_X + is_y[:, 1])
    ys = 2 * is_y[:, 0] + is_y[:, 1]
    xs = jax.nn.one_hot(ids, ORDER_VOCAB_SIZE, dtype=dtype) if one_hot else ids
    return xs, ys

"""The adding problem, a regression task with a long-range dependency."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstmjax._checks import check_size, jit_with_options
from lstmjax._typing import Array, PRNGKey

ADDING_BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting 1, the mean target: Var(U1 + U2) = 2 * (1/12) = 1/6."""


@jit_with_options("batch_size", "length", "dtype")
def adding_problem(
    key: PRNGKey, batch_size: int, length: int, *, dtype=jnp.float32
) -> tuple[Array, Array]:
    """Batches of the adding problem.

    Source: Hochreiter & Schmidhuber (1997), experiment 4, in the variant of
    Arjovsky, Shah & Bengio (2016): each step carries a value drawn from
    U[0, 1] and a marker bit; exactly one marker falls in the first half of
    the sequence (steps [0, T//2)) and one in the second half ([T//2, T)).
    The target is the sum of the two marked values.

    Baseline: predicting the constant 1 (the mean target, ignoring the input)
    has MSE `ADDING_BASELINE_MSE` = 1/6; a model must beat it to have
    learned anything.

    Args:
      key: a `jax.random` key; the batch is a pure function of it.
      batch_size: B.
      length: T >= 2.
      dtype: floating dtype of the arrays.

    Returns:
      `(xs, ys)`: xs `[B, T, 2]` with features (value, marker); ys `[B, 1]`.
    """
    batch_size = check_size("batch_size", batch_size)
    length = check_size("length", length, 2)
    k_val, k_first, k_second = jax.random.split(key, 3)
    half = length // 2
    values = jax.random.uniform(k_val, (batch_size, length), dtype)
    first = jax.random.randint(k_first, (batch_size,), 0, half)
    second = jax.random.randint(k_second, (batch_size,), half, length)
    steps = jnp.arange(length)[None, :]
    markers = (steps == first[:, None]) | (steps == second[:, None])
    markers = markers.astype(dtype)
    xs = jnp.stack([values, markers], axis=-1)
    ys = jnp.sum(values * markers, axis=1, keepdims=True)
    return xs, ys

"""State tracking: the running sum of a token stream modulo m (parity for m = 2)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lstmjax._checks import check_size
from lstmjax._typing import Array, PRNGKey

_MAX_MODULUS = 2**30


@functools.partial(jax.jit, static_argnames=("batch_size", "length", "modulus"))
def modular_addition(
    key: PRNGKey, batch_size: int, length: int, *, modulus: int = 2
) -> tuple[Array, Array]:
    """Batches of running modular addition: after each token, the sum so far modulo m.

    Source: the state-tracking tasks of Delétang et al. (2023, "Neural
    Networks and the Chomsky Hierarchy": parity check, modular arithmetic)
    as used by Beck et al. (2024, "xLSTM", section 4.1) and Grazzi et al.
    (2024). Tokens are drawn uniformly, independently, from {0, ..., m-1};
    the target at every step is the running sum modulo m,

        ys[b, t] = (xs[b, 0] + ... + xs[b, t]) mod m,

    so with m = 2 (the default) it is the parity of the bits seen so far.
    Every prefix of a sequence is itself an example, so a model trained on
    length T is tested on longer ones by generating a longer batch. Solving
    it at every length takes a state that a token can move around the
    cycle of m residues (for parity: flip); a recurrence whose carry enters
    each step linearly with positive coefficients cannot (Grazzi et al.).

    Baseline: the targets are uniform and independent of the current token
    alone, so without a state accuracy is 1/m and cross-entropy ln m nats.
    One-hot inputs are `jax.nn.one_hot(xs, modulus)`.

    Args:
      key: a `jax.random` key.
      batch_size: B.
      length: T, steps per sequence.
      modulus: m, 2 <= m <= 2^30, the number of residues (and of input tokens).

    Returns:
      `(xs, ys)`, both int32 `[B, T]` with values in [0, m).
    """
    check_size("batch_size", batch_size)
    check_size("length", length)
    check_size("modulus", modulus, minimum=2)
    if modulus > _MAX_MODULUS:
        raise ValueError(
            f"modulus must be at most 2^30 (the int32 sums of two residues must not "
            f"overflow); got {modulus}."
        )
    xs = jax.random.randint(key, (batch_size, length), 0, modulus, jnp.int32)
    # Reduced at every combination, so no partial sum exceeds 2 (m - 1): exact at any length.
    ys = jax.lax.associative_scan(lambda a, b: jnp.remainder(a + b, modulus), xs, axis=1)
    return xs, ys

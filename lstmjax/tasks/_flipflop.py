"""The 3-bit flip-flop: hold the sign of the last pulse on each of several channels."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstmjax._array_checks import check_parameter
from lstmjax._checks import check_size, jit_with_options
from lstmjax._typing import Array, PRNGKey

FLIPFLOP_BITS = 3


def _check_rate(arguments: dict) -> None:
    check_parameter("pulse_probability", arguments["pulse_probability"], "flip_flop", 0.0, 1.0)


@jit_with_options("batch_size", "length", "bits", "dtype", check=_check_rate)
def flip_flop(
    key: PRNGKey,
    batch_size: int,
    length: int,
    *,
    bits: int = FLIPFLOP_BITS,
    pulse_probability: float = 0.05,
    dtype=jnp.float32,
) -> tuple[Array, Array]:
    """Batches of the n-bit flip-flop task of Sussillo & Barak (2013).

    Each of `bits` input channels is 0 except for brief pulses of +1 or -1;
    the target on channel i is the sign of the last pulse seen on it, held
    until the next one. A network that solves it stores 2^bits memories, one
    per corner of {-1, +1}^bits. Every channel gets a pulse at t = 0 (random
    sign), so that the target is always defined; later, each step carries a
    pulse on each channel with probability `pulse_probability`, sign random.

    Baseline: predicting 0 everywhere gives MSE 1; holding a random corner
    gives MSE 2.

    Args:
      key: a `jax.random` key.
      batch_size: B.
      length: T, steps per sequence.
      bits: channels.
      pulse_probability: chance of a pulse per channel and step after t = 0.
      dtype: of both arrays.

    Returns:
      `(xs, ys)`, both `[B, T, bits]`, xs in {-1, 0, +1}, ys in {-1, +1}.
    """
    batch_size = check_size("batch_size", batch_size)
    length = check_size("length", length)
    bits = check_size("bits", bits)
    k_on, k_sign = jax.random.split(key)
    shape = (batch_size, length, bits)
    on = jax.random.bernoulli(k_on, pulse_probability, shape).at[:, 0].set(True)
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
    xs = jnp.where(on, sign, 0.0)

    def hold(last, x):  # last [B, bits]: the sign of the latest pulse
        last = jnp.where(x != 0, x, last)
        return last, last

    _, ys = jax.lax.scan(hold, jnp.zeros((batch_size, bits)), jnp.swapaxes(xs, 0, 1))
    return xs.astype(dtype), jnp.swapaxes(ys, 0, 1).astype(dtype)

"""Default initialisers and the per-gate block helper.

Defaults (each overridable with any `jax.nn.initializers` function). Each is
one module-level object, so that two cells built with the default
initialisers compare equal (a cell is a value: its initialisers are fields):
  input kernels: LeCun normal (variance 1/fan_in, as Flax's recurrent cells);
  recurrent kernels: orthogonal, one independent orthogonal block per gate,
    so each gate's recurrent matrix has all singular values equal to 1;
  biases: zeros (the LSTM forget gate then gets `forget_bias` added);
  LSTM peephole weights: zeros.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

default_kernel_init = jax.nn.initializers.lecun_normal()
default_bias_init = jax.nn.initializers.zeros
default_peephole_init = jax.nn.initializers.zeros
_orthogonal = jax.nn.initializers.orthogonal()


def default_recurrent_init(key, shape, dtype=jnp.float32):
    """`jax.nn.initializers.orthogonal()`, for low-precision dtypes too.

    The orthogonal draw is a QR decomposition, which LAPACK offers only in
    single and double precision: for bfloat16 and float16 it is drawn in
    float32 and rounded to `dtype`.
    """
    exact = jnp.dtype(dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
    return _orthogonal(key, shape, dtype if exact else jnp.float32).astype(dtype)


def gate_blocks(init, key, rows: int, hidden: int, gates: int, dtype):
    """Initialise `gates` blocks `[rows, hidden]` independently, side by side.

    Returns `[rows, gates * hidden]`. Fusing gates into one matrix must not
    change the statistics each gate would get on its own (an orthogonal
    `[H, 4H]` matrix is not four orthogonal `[H, H]` ones).
    """
    keys = jax.random.split(key, gates)
    return jnp.concatenate([init(k, (rows, hidden), dtype) for k in keys], axis=1)

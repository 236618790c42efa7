"""The package's type aliases, written once (imports nothing from lstmjax)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Array = jax.Array  # a JAX array (or a tracer of one)
PRNGKey = jax.Array  # a typed key (jax.random.key) or a raw uint32 [2] key
Params = Any  # a NamedTuple of arrays, one type per cell (LSTMParams, GRUParams, ...)
Carry = Any  # an array, or a NamedTuple of arrays (the LSTM's LSTMCarry(h, c))
Initializer = Callable[..., Array]  # any jax.nn.initializers function: (key, shape, dtype) -> array

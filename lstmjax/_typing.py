"""The package's type aliases, written once (imports nothing from lstmjax).

`Params` and `Carry` name pytrees of arrays. They are aliases of `Any`, not a
union: every cell overrides `Cell.project`/`recur`/`output` with its own
NamedTuple types (`LSTMParams`, `LSTMCarry`, ...), and a union here would make
each of those overrides, ours and users', an incompatible override to a type
checker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax

Array: TypeAlias = jax.Array  # a JAX array (or a tracer of one)
PRNGKey: TypeAlias = jax.Array  # a typed key (jax.random.key) or a raw uint32 [2] key
PyTree: TypeAlias = Any  # any pytree: a (Named)tuple, list or dict of arrays, nested
Params: TypeAlias = Any  # a cell's parameters: a NamedTuple of arrays (LSTMParams, GRUParams, ...)
Carry: TypeAlias = Any  # an array, or a NamedTuple of arrays (the LSTM's LSTMCarry(h, c))
Batch: TypeAlias = Any  # a training batch: a pair (xs, ys) of arrays or pytrees
# A jax.nn.initializers function: (key, shape, dtype) -> array.
Initializer: TypeAlias = Callable[..., Array]

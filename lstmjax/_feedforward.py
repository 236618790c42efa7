"""Feed-forward pieces as pure functions: dense, MLP, embedding, readouts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._array_checks import (
    as_array,
    check_features,
    check_float,
    check_lengths,
    check_token_ids,
)
from lstmjax._arrays import row
from lstmjax._checks import check_activation, check_param_dtype, check_size
from lstmjax._initializers import default_bias_init, default_kernel_init
from lstmjax._typing import Array


class Layer(NamedTuple):
    """A feed-forward layer: `init(key, input_size) -> params`, `apply(params, x) -> y`."""

    init: Callable
    apply: Callable


class DenseParams(NamedTuple):
    """Affine layer parameters: `w [I, O]`, `b [O]`."""

    w: Array  # [input_size, output_size]
    b: Array  # [output_size]


class MLPParams(NamedTuple):
    """The dense layers of an MLP, input to output."""

    layers: tuple  # of DenseParams, input to output


class EmbeddingParams(NamedTuple):
    """Embedding table `[vocab_size, features]`."""

    table: Array  # [vocab_size, features]


def dense(
    output_size: int,
    *,
    kernel_init=default_kernel_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Layer:
    """Affine map `y = x W + b`; x: `[..., input_size]` -> y: `[..., output_size]`."""
    output_size = check_size("output_size", output_size)
    dtype = check_param_dtype(dtype)

    def init(key, input_size: int) -> DenseParams:
        input_size = check_size("input_size", input_size)
        kw, kb = jax.random.split(key)
        return DenseParams(
            w=kernel_init(kw, (input_size, output_size), dtype),
            b=bias_init(kb, (output_size,), dtype),
        )

    def apply(params: DenseParams, x: Array) -> Array:
        x = as_array(x, "x")
        check_float(x, "x")
        check_features(x, params.w.shape[0], "dense")
        return x @ params.w + row(params.b, x)

    return Layer(init, apply)


def mlp(
    sizes: Sequence[int],
    activation: Callable[[Array], Array] = jnp.tanh,
    *,
    dtype=jnp.float32,
) -> Layer:
    """Multi-layer perceptron: dense layers of `sizes`, `activation` between them.

    The last layer is affine (no activation): add a readout or squash outside.
    x: `[..., input_size]` -> `[..., sizes[-1]]`.
    """
    if isinstance(sizes, str) or not isinstance(sizes, (Sequence, np.ndarray)) or len(sizes) == 0:
        raise ValueError(f"mlp: sizes must be a non-empty sequence of ints; got {sizes!r}.")
    sizes = [check_size(f"sizes[{i}]", n) for i, n in enumerate(sizes)]
    activation = check_activation("activation", activation)
    layers = [dense(n, dtype=dtype) for n in sizes]

    def init(key, input_size: int) -> MLPParams:
        params = []
        for layer, k, n in zip(layers, jax.random.split(key, len(layers)), sizes, strict=True):
            params.append(layer.init(k, input_size))
            input_size = n
        return MLPParams(tuple(params))

    def apply(params: MLPParams, x: Array) -> Array:
        for i, p in enumerate(params.layers):
            x = layers[i].apply(p, x)
            if i < len(params.layers) - 1:
                x = activation(x)
        return x

    return Layer(init, apply)


def embedding(vocab_size: int, features: int, *, dtype=jnp.float32) -> Layer:
    """Token embedding; `init(key)` (no input size), `apply(params, ids)`.

    ids: int `[...]` in [0, vocab_size) -> `[..., features]`. Rows are N(0, 1),
    as PyTorch's. Concrete ids outside [0, vocab_size) raise an error. Under
    `jit` they cannot be checked; such an id (negative ones included, which
    would otherwise wrap around to the last rows) gives a row of NaN, so the
    mistake shows in the loss rather than as a plausible embedding.
    """
    vocab_size = check_size("vocab_size", vocab_size)
    features = check_size("features", features)
    dtype = check_param_dtype(dtype)

    def init(key, input_size: int | None = None) -> EmbeddingParams:
        return EmbeddingParams(jax.random.normal(key, (vocab_size, features), dtype))

    def apply(params: EmbeddingParams, ids: Array) -> Array:
        ids = check_token_ids(ids, vocab_size, "embedding")
        ids = jnp.where(ids < 0, vocab_size, ids)  # out of range, not wrapped to the end
        return jnp.take(params.table, ids, axis=0, mode="fill", fill_value=jnp.nan)

    return Layer(init, apply)


def softmax_readout(num_classes: int, *, dtype=jnp.float32) -> Layer:
    """Dense layer to `num_classes` logits followed by a log-softmax.

    x: `[..., input_size]` -> log-probabilities `[..., num_classes]`.
    """
    inner = dense(num_classes, dtype=dtype)

    def apply(params: DenseParams, x: Array) -> Array:
        return jax.nn.log_softmax(inner.apply(params, x), axis=-1)

    return Layer(inner.init, apply)


def last_valid(ys: Array, lengths: Array | None = None) -> Array:
    """Each sequence's output at its last valid step, for many-to-one models.

    ys: `[batch, time, features]`; lengths: int `[batch]` in [0, T] or None
    (all T). Returns `[batch, features]`. A sequence of length 0 gives zeros.
    Lengths are checked as `unroll` checks them (under `jit`, out-of-range
    values act as clipped to [0, T]).
    """
    ys = as_array(ys, "ys")
    if jnp.ndim(ys) != 3:
        raise ValueError(f"last_valid: ys must be [batch, time, features]; got {jnp.shape(ys)}.")
    if lengths is None:
        return ys[:, -1]
    lengths = check_lengths(lengths, ys.shape[0], ys.shape[1], "last_valid")
    idx = jnp.clip(lengths - 1, 0, ys.shape[1] - 1)
    out = jnp.take_along_axis(ys, idx[:, None, None], axis=1)[:, 0]
    return jnp.where((lengths > 0)[:, None], out, jnp.zeros_like(out))

"""Feed-forward pieces as pure functions: dense, MLP, embedding, readouts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, check_size
from lstmjax._checks import check_features, check_float, row
from lstmjax._initializers import default_bias_init, default_kernel_init


class Layer(NamedTuple):
    """A feed-forward layer: `init(key, input_size) -> params`, `apply(params, x) -> y`."""

    init: Callable
    apply: Callable


class DenseParams(NamedTuple):
    w: Array  # [input_size, output_size]
    b: Array  # [output_size]


class MLPParams(NamedTuple):
    layers: tuple  # of DenseParams, input to output


class EmbeddingParams(NamedTuple):
    table: Array  # [vocab_size, features]


def dense(
    output_size: int,
    *,
    kernel_init=default_kernel_init,
    bias_init=default_bias_init,
    dtype=jnp.float32,
) -> Layer:
    """Affine map `y = x W + b`; x: `[..., input_size]` -> y: `[..., output_size]`."""
    check_size("output_size", output_size)

    def init(key, input_size: int) -> DenseParams:
        check_size("input_size", input_size)
        kw, kb = jax.random.split(key)
        return DenseParams(
            w=kernel_init(kw, (input_size, output_size), dtype),
            b=bias_init(kb, (output_size,), dtype),
        )

    def apply(params: DenseParams, x: Array) -> Array:
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
    if len(sizes) == 0:
        raise ValueError("mlp needs at least one layer size.")
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

    ids: int `[...]` -> `[..., features]`. Rows are N(0, 1), as PyTorch's.
    """
    check_size("vocab_size", vocab_size)
    check_size("features", features)

    def init(key, input_size: int | None = None) -> EmbeddingParams:
        return EmbeddingParams(jax.random.normal(key, (vocab_size, features), dtype))

    def apply(params: EmbeddingParams, ids: Array) -> Array:
        if not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
            raise TypeError(f"embedding: ids must be integers; got {jnp.result_type(ids)}.")
        return jnp.take(params.table, ids, axis=0)

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

    ys: `[batch, time, features]`; lengths: int `[batch]` or None (all T).
    Returns `[batch, features]`. A sequence of length 0 gives zeros.
    """
    if jnp.ndim(ys) != 3:
        raise ValueError(f"last_valid: ys must be [batch, time, features]; got {jnp.shape(ys)}.")
    if lengths is None:
        return ys[:, -1]
    lengths = jnp.asarray(lengths)
    idx = jnp.clip(lengths - 1, 0, ys.shape[1] - 1)
    out = jnp.take_along_axis(ys, idx[:, None, None], axis=1)[:, 0]
    return jnp.where((lengths > 0)[:, None], out, jnp.zeros_like(out))

"""A character (token) language model: embedding, recurrent stack, readout.

    tokens [B, T] --embedding--> [B, T, E] --recurrent--> [B, T, H] --dense--> logits [B, T, V]

`apply` runs whole sequences (training, scoring); `step` advances the carry
by one token (sampling, see `lstmjax.generate`). Both go through the same
recurrent stack, so they agree to rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._cell import Cell
from lstmjax._checks import check_size
from lstmjax._feedforward import DenseParams, EmbeddingParams, dense, embedding
from lstmjax._layers import LayerParams, Recurrent, recurrent
from lstmjax._typing import Array, Carry, PRNGKey

__all__ = ["LMParams", "LanguageModel", "language_model"]


class LMParams(NamedTuple):
    """Language model parameters: embedding, recurrent stack, readout."""

    embed: EmbeddingParams  # table [V, E]
    recurrent: tuple[LayerParams, ...]  # one entry per layer
    readout: DenseParams  # w [H, V], b [V]


class LanguageModel(NamedTuple):
    """A language model as pure functions.

    Attributes:
      init: `(key) -> LMParams`.
      apply: `(params, tokens, carry=None, *, lengths=None, key=None,
        deterministic=False) -> (logits, carry)`; tokens int `[B, T]`, logits
        `[B, T, V]`; with `dropout > 0` pass `key` to train with dropout
        between layers or `deterministic=True` to evaluate without it (see
        `Recurrent.apply`); the carry is the recurrent stack's, each leaf
        `[num_layers, B, H]`.
      step: `(params, carry, tokens) -> (carry, logits)`; tokens int `[B]`,
        logits `[B, V]`: one step, no dropout.
      initial_carry: `(batch) -> carry` of zeros.
      vocab_size: V.
      net: the `Recurrent` stack.
    """

    init: Callable[[PRNGKey], LMParams]
    apply: Callable[..., tuple[Array, Carry]]
    step: Callable[[LMParams, Carry, Array], tuple[Carry, Array]]
    initial_carry: Callable[[int], Carry]
    vocab_size: int
    net: Recurrent


def language_model(
    vocab_size: int,
    embed_size: int,
    cell: Cell,
    num_layers: int = 1,
    dropout: float = 0.0,
    *,
    dtype=jnp.float32,
) -> LanguageModel:
    """Build a next-token model over `vocab_size` tokens.

    Args:
      vocab_size: V.
      embed_size: E, the width of the token embedding.
      cell: the recurrent cell of every layer (its own dtype applies to it).
      num_layers: depth of the (unidirectional) recurrent stack.
      dropout: drop rate between recurrent layers (needs `num_layers >= 2`),
        used when `apply` gets a key.
      dtype: dtype of the embedding and readout parameters.

    Returns:
      A `LanguageModel`.
    """
    vocab_size = check_size("vocab_size", vocab_size)
    embed = embedding(vocab_size, embed_size, dtype=dtype)
    net = recurrent(cell, num_layers, bidirectional=False, dropout=dropout)
    readout = dense(vocab_size, dtype=dtype)

    def init(key) -> LMParams:
        k_embed, k_net, k_out = jax.random.split(key, 3)
        return LMParams(
            embed=embed.init(k_embed),
            recurrent=net.init(k_net, embed_size),
            readout=readout.init(k_out, cell.output_size),
        )

    def apply(
        params: LMParams,
        tokens: Array,
        carry: Optional[Carry] = None,
        *,
        lengths: Optional[Array] = None,
        key: Optional[PRNGKey] = None,
        deterministic: bool = False,
    ) -> tuple[Array, Carry]:
        if jnp.ndim(tokens) != 2:
            raise ValueError(
                f"language model: tokens must be [batch, time]; got {jnp.shape(tokens)}."
            )
        hs, carry = net.apply(
            params.recurrent,
            embed.apply(params.embed, tokens),
            carry,
            lengths=lengths,
            key=key,
            deterministic=deterministic,
        )
        return readout.apply(params.readout, hs), carry

    def step(params: LMParams, carry: Carry, tokens: Array) -> tuple[Carry, Array]:
        if jnp.ndim(tokens) != 1:
            raise ValueError(
                f"language model step: tokens must be [batch]; got {jnp.shape(tokens)}."
            )
        logits, carry = apply(params, tokens[:, None], carry, deterministic=True)
        return carry, logits[:, 0]

    return LanguageModel(
        init=init,
        apply=apply,
        step=step,
        initial_carry=net.initial_carry,
        vocab_size=vocab_size,
        net=net,
    )

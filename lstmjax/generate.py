"""Sampling text from a recurrent language model.

The prompt is read once, then each new token is sampled and fed back while
the recurrent carry moves forward, one step per token, inside a single
jitted `lax.scan`: generating n tokens costs n steps, not the n^2 of
re-running the growing prefix through the whole network every time.

Any model fits that offers a one-token step
`step_fn(params, carry, ids [B]) -> (carry, logits [B, V])`, such as
`lstmjax.lm.language_model(...).step`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp

from lstmjax._array_checks import as_array, check_token_ids
from lstmjax._checks import check_size, check_temperature, check_top_k
from lstmjax._typing import Array, Carry, PRNGKey

StepFn = Callable[[Any, Carry, Array], tuple[Carry, Array]]

__all__ = ["INVALID_TOKEN", "filter_logits", "generate_text", "sample", "sample_logits"]


def filter_logits(
    logits: Array, temperature: Union[float, Array] = 1.0, top_k: Optional[int] = None
) -> Array:
    """Logits of the sampling distribution: top-k filtering, then temperature.

    Args:
      logits: `[..., V]`.
      temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
      top_k: keep the k largest logits (ties with the k-th are kept too) and
        give the rest probability 0; None keeps all.

    Returns:
      `[..., V]`: `logits / temperature`, with -inf outside the top k.
    """
    check_temperature(temperature)
    if top_k is not None:
        top_k = check_top_k(top_k, jnp.shape(logits)[-1])
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits >= kth, logits, jnp.full_like(logits, -jnp.inf))
    return logits / jnp.asarray(temperature, logits.dtype)


# A token that could not be drawn: the logits held NaN, or a traced temperature
# was NaN or negative. Never a valid id, so the mistake cannot pass as text.
INVALID_TOKEN = -1


def sample_logits(
    key: PRNGKey,
    logits: Array,
    temperature: Union[float, Array] = 1.0,
    top_k: Optional[int] = None,
) -> Array:
    """Draw token ids from softmax(filter_logits(logits)); temperature 0 is greedy.

    Args:
      key: a `jax.random` key.
      logits: `[..., V]`.
      temperature: >= 0; 0 picks the argmax (deterministic). Checked when
        concrete; a traced temperature that is NaN or negative gives
        `INVALID_TOKEN` (-1), never a plausible token.
      top_k: as in `filter_logits`.

    Returns:
      int32 `[...]`; `INVALID_TOKEN` (-1) where the logits hold a NaN.
    """
    check_temperature(temperature)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    t = jnp.asarray(temperature)
    broken = jnp.any(jnp.isnan(logits), axis=-1) | ~(jnp.isfinite(t) & (t >= 0))
    positive = t > 0
    # A placeholder temperature of 1 where it is 0 keeps the unused branch finite.
    safe = jnp.where(positive, jnp.asarray(temperature, logits.dtype), 1)
    drawn = jax.random.categorical(key, filter_logits(logits, safe, top_k), axis=-1)
    token = jnp.where(positive, drawn.astype(jnp.int32), greedy)
    return jnp.where(broken, jnp.full_like(token, INVALID_TOKEN), token)


def sample(
    key: PRNGKey,
    step_fn: StepFn,
    params,
    carry: Carry,
    prompt_ids: Array,
    num_tokens: int,
    *,
    temperature=1.0,
    top_k: Optional[int] = None,
) -> Array:
    """Continue a prompt by sampling `num_tokens` tokens, one step at a time.

    The prompt's tokens go through `step_fn` in turn (the carry is then the
    one after the whole prompt); new token i is drawn with key
    `jax.random.split(key, num_tokens)[i]` from the logits after the token
    before it, then fed back. Same key, same output.

    Args:
      key: a `jax.random` key (first, as in every lstmjax function that needs one).
      step_fn: `(params, carry, ids [B]) -> (carry, logits [B, V])`; a
        hashable function (it is a static argument of `jit`).
      params: the model's parameters.
      carry: the carry before the prompt, for batch size B (B = 1 for a 1-D
        prompt), e.g. `model.initial_carry(B)`.
      prompt_ids: int `[B, P]` or `[P]`, P >= 1.
      num_tokens: how many tokens to generate (static).
      temperature: >= 0 (0 = greedy argmax).
      top_k: sample among the k most likely tokens only (static); None = all.

    Returns:
      int32 `[B, num_tokens]`, or `[num_tokens]` for a 1-D prompt; the
      prompt is not repeated. Token ids are checked against the model's
      vocabulary; a step whose logits hold NaN gives `INVALID_TOKEN` (-1).
    """
    prompt = as_array(prompt_ids, "prompt_ids")
    single = prompt.ndim == 1
    if single:
        prompt = prompt[None]
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(
            f"sample: prompt_ids must be [B, P] or [P] with P >= 1; "
            f"got shape {jnp.shape(prompt_ids)}."
        )
    if not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise TypeError(f"sample: prompt_ids must be integer token ids; got {prompt.dtype}.")
    num_tokens = check_size("num_tokens", num_tokens, minimum=0)
    check_temperature(temperature)
    logits = jax.eval_shape(step_fn, params, carry, prompt[:, 0])[1]
    vocab_size = jnp.shape(logits)[-1]
    check_token_ids(prompt, vocab_size, "sample", "prompt_ids")
    if top_k is not None:
        top_k = check_top_k(top_k, vocab_size)
    out = _sample(step_fn, params, carry, prompt, num_tokens, key, temperature, top_k)
    return out[0] if single else out


@functools.partial(jax.jit, static_argnames=("step_fn", "num_tokens", "top_k"))
def _sample(step_fn, params, carry, prompt, num_tokens, key, temperature, top_k):
    """Jitted body of `sample`; prompt `[B, P]` -> tokens `[B, num_tokens]`."""
    if num_tokens == 0:
        return jnp.zeros((prompt.shape[0], 0), jnp.int32)

    def read(state, ids):
        carry, _ = state
        return step_fn(params, carry, ids), None

    # The first prompt token gives the logits' shape; the rest run in a scan.
    first = step_fn(params, carry, prompt[:, 0])
    (carry, logits), _ = jax.lax.scan(read, first, jnp.swapaxes(prompt[:, 1:], 0, 1))

    keys = jax.random.split(key, num_tokens)
    token = sample_logits(keys[0], logits, temperature, top_k)

    def write(state, k):
        carry, previous = state
        carry, logits = step_fn(params, carry, previous)
        token = sample_logits(k, logits, temperature, top_k)
        return (carry, token), token

    _, rest = jax.lax.scan(write, (carry, token), keys[1:])  # [num_tokens - 1, B]
    return jnp.concatenate([token[:, None], jnp.swapaxes(rest, 0, 1)], axis=1)


def generate_text(
    key: PRNGKey,
    model,
    params,
    vocab,
    prompt: str,
    num_chars: int,
    *,
    temperature=1.0,
    top_k: Optional[int] = None,
) -> str:
    """Continue a text prompt with a character language model.

    Args:
      key: a `jax.random` key.
      model: a `lstmjax.lm.LanguageModel` (anything with `step` and
        `initial_carry`).
      params: its parameters.
      vocab: a `lstmjax.tasks.Vocab` (anything with `encode` and `decode`).
      prompt: a non-empty string of characters in the vocabulary.
      num_chars: characters to generate.
      temperature: as in `sample` (default 1.0).
      top_k: as in `sample` (default None: no filter).

    Returns:
      The generated characters (without the prompt).
    """
    if not prompt:
        raise ValueError("generate_text: the prompt must hold at least one character.")
    ids = jnp.asarray(vocab.encode(prompt))
    out = sample(
        key,
        model.step,
        params,
        model.initial_carry(1),
        ids,
        num_chars,
        temperature=temperature,
        top_k=top_k,
    )
    return vocab.decode(jax.device_get(out))

"""A character-level corpus that ships with every machine: Python's own source.

Karpathy's char-rnn learned to write C by reading the Linux source; here the
corpus is the Python standard library, which every Python installation
carries, so no download is ever needed. The text depends on the Python
version (its standard library changes), and is fixed for a given one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._checks import check_real, check_size, jit_with_options
from lstmjax._typing import Array, PRNGKey

# Folders of the standard library left out of the corpus: test suites (huge
# and repetitive), installed third-party packages, and byte-code caches.
_SKIPPED_DIRS = frozenset({"test", "tests", "site-packages", "dist-packages", "__pycache__"})


class Vocab(NamedTuple):
    """A character vocabulary: id i stands for `chars[i]`; chars are sorted."""

    chars: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Map `text` to int32 ids `[len(text)]`; unknown characters raise."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        known = np.frombuffer("".join(self.chars).encode("utf-32-le"), dtype=np.uint32)
        ids = np.clip(np.searchsorted(known, codes), 0, max(len(known) - 1, 0))
        unknown = known[ids] != codes if len(known) else np.ones(len(codes), bool)
        if unknown.any():
            missing = sorted({chr(c) for c in codes[unknown]})
            raise ValueError(
                f"Vocab.encode: {len(missing)} character(s) not in the vocabulary of "
                f"{self.size}: {missing[:10]!r}."
            )
        return ids.astype(np.int32)

    def decode(self, ids: Union[np.ndarray, Array, list[int]]) -> str:
        """Map ids `[n]` (any int array or sequence) back to a string."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"Vocab.decode: ids must be one-dimensional; got shape {ids.shape}.")
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(
                f"Vocab.decode: ids must lie in [0, {self.size}); got {ids.min()}..{ids.max()}."
            )
        return "".join(self.chars[i] for i in ids.tolist())


def build_vocab(text: str) -> Vocab:
    """The sorted set of characters of `text`."""
    return Vocab(tuple(sorted(set(text))))


class TextData(NamedTuple):
    """An encoded corpus split in two contiguous parts."""

    vocab: Vocab
    train: np.ndarray  # int32 [N_train], the first (1 - valid_fraction) of the text
    valid: np.ndarray  # int32 [N_valid], the rest


def stdlib_dir() -> Path:
    """The folder of the running Python's standard library."""
    return Path(os.path.dirname(os.__file__))


def stdlib_files() -> list[Path]:
    """The standard library's .py files, sorted by path relative to its folder.

    Test suites, third-party packages and caches are left out (`_SKIPPED_DIRS`).
    """
    root = stdlib_dir()
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]
        found.extend(Path(folder, f) for f in files if f.endswith(".py"))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def stdlib_text(max_chars: Optional[int] = 1_000_000) -> str:
    """The concatenated source of `stdlib_files()`, cut at `max_chars` characters.

    Files that are not valid UTF-8 are skipped. `max_chars=None` reads them all.
    """
    if max_chars is not None:
        max_chars = check_size("max_chars", max_chars)
    parts, total = [], 0
    for path in stdlib_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    text = "".join(parts)
    return text if max_chars is None else text[:max_chars]


def char_corpus(
    text: Optional[str] = None,
    *,
    max_chars: Optional[int] = 1_000_000,
    valid_fraction: float = 0.1,
) -> TextData:
    """Encode a text for character-level language modelling.

    The vocabulary is built from the whole text, so that every validation
    character has an id; the split is contiguous (the last `valid_fraction`
    of the text is held out), so no window straddles the two parts.

    Args:
      text: the corpus; None reads `stdlib_text(max_chars)`.
      max_chars: used only when `text` is None.
      valid_fraction: share held out for validation, in (0, 1).

    Returns:
      A `TextData(vocab, train, valid)`.
    """
    valid_fraction = check_real("char_corpus: valid_fraction", valid_fraction)
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"char_corpus: valid_fraction must lie in (0, 1); got {valid_fraction}.")
    if text is None:
        text = stdlib_text(max_chars)
    if len(text) < 2:
        raise ValueError(f"char_corpus: the text needs at least 2 characters; got {len(text)}.")
    vocab = build_vocab(text)
    ids = vocab.encode(text)
    cut = min(max(round(len(ids) * (1.0 - valid_fraction)), 1), len(ids) - 1)
    return TextData(vocab, ids[:cut], ids[cut:])


def unigram_entropy_bits(tokens: Union[np.ndarray, Array], vocab_size: int) -> float:
    """Entropy of the token frequencies of `tokens`, in bits per token.

    This is the cross-entropy, on `tokens` themselves, of the best model that
    ignores context; a character model must go below it (computed on the
    train split, it is the char-level baseline).
    """
    vocab_size = check_size("unigram_entropy_bits: vocab_size", vocab_size)
    counts = np.bincount(np.asarray(tokens).ravel(), minlength=vocab_size)
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log2(p)))


@jit_with_options("batch_size", "length")
def random_windows(key: PRNGKey, tokens: Array, batch_size: int, length: int) -> Array:
    """Windows of `length + 1` tokens at random starts, for next-token training.

    Feed `windows[:, :-1]` to the model and score with `windows[:, 1:]` (see
    `lstmjax.losses.next_token`). Jitted, with `batch_size` and `length`
    static; pass `tokens` as a device array (`jnp.asarray(data.train)`) so
    that the corpus is not copied to the device on every call.

    Args:
      key: a `jax.random` key; the starts are a pure function of it.
      tokens: int `[N]`, N > length.
      batch_size: B.
      length: T.

    Returns:
      int32 `[B, T + 1]`.
    """
    batch_size = check_size("batch_size", batch_size)
    length = check_size("length", length)
    n = jnp.shape(tokens)[0]
    if jnp.ndim(tokens) != 1 or n < length + 1:
        raise ValueError(
            f"random_windows: tokens must be [N] with N >= length + 1 = {length + 1}; "
            f"got shape {jnp.shape(tokens)}."
        )
    starts = jax.random.randint(key, (batch_size, 1), 0, n - length)
    idx = starts + jnp.arange(length + 1)[None, :]
    return jnp.asarray(tokens)[idx].astype(jnp.int32)


def stream_rows(tokens: Union[np.ndarray, Array], batch_size: int) -> Array:
    """Cut a token stream into `batch_size` contiguous rows.

    Row b holds tokens [b * M, (b + 1) * M) with M = N // batch_size; the tail
    that does not fill a row is dropped.

    Returns:
      int32 `[B, M]`.
    """
    batch_size = check_size("batch_size", batch_size)
    n = jnp.shape(tokens)[0]
    if jnp.ndim(tokens) != 1 or n < batch_size:
        raise ValueError(
            f"stream_rows: tokens must be [N] with N >= batch_size = {batch_size}; "
            f"got shape {jnp.shape(tokens)}."
        )
    m = n // batch_size
    return jnp.reshape(jnp.asarray(tokens)[: batch_size * m], (batch_size, m)).astype(jnp.int32)


def stream_chunks(tokens: Union[np.ndarray, Array], batch_size: int, length: int) -> Array:
    """Consecutive chunks of the rows of `stream_rows`, for truncated BPTT.

    Chunk k holds steps [k T, k T + T] of every row: the model reads
    `chunk[:, :-1]` and predicts `chunk[:, 1:]`, and the last token of chunk k
    is the first of chunk k + 1, so row b of chunk k + 1 continues row b of
    chunk k and the carry can be passed on from one chunk to the next.

    Args:
      tokens: int `[N]`.
      batch_size: B.
      length: T, the truncation length.

    Returns:
      int32 `[K, B, T + 1]` with K = (N // B - 1) // T.
    """
    length = check_size("length", length)
    rows = stream_rows(tokens, batch_size)
    count = (rows.shape[1] - 1) // length
    if count < 1:
        raise ValueError(
            f"stream_chunks: rows of {rows.shape[1]} tokens are too short for one chunk "
            f"of length {length} + 1; use fewer rows or a shorter length."
        )
    idx = length * jnp.arange(count)[:, None] + jnp.arange(length + 1)[None, :]  # [K, T+1]
    return jnp.transpose(rows[:, idx], (1, 0, 2))

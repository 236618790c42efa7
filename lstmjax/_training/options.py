"""The option objects of `fit`: checkpointing and logging, each checked when built."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from lstmjax._checks import check_bool, check_callable, check_optional_size, check_size


def _check_path(owner: str, name: str, value: Any, optional: bool) -> Optional[Path]:
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)):
        expected = "a path (str or os.PathLike)" + (" or None" if optional else "")
        raise TypeError(f"{owner}: {name} must be {expected}; got {value!r}.")
    return Path(value)


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where and how often `fit` saves checkpoints, and how it resumes from them.

    Attributes:
      directory: where the checkpoints go (created if missing).
      every: save every this many steps, and always at the end; None: at
        the end only.
      keep: how many of the newest checkpoints are kept (>= 1; default 3).
      resume: restore the newest intact checkpoint in `directory` if there
        is one (default); with False, a directory that already holds
        checkpoints is an error.
      on_save: called as `on_save(step, path)` after each save.
      optimizer: the `optax.GradientTransformation` the step uses. Given, its
        behaviour is fingerprinted (three updates on a fixed probe) and
        stored with each checkpoint, so resuming with another optimizer or
        another learning rate is refused. None: only the optimizer state's
        structure is checked.
      fingerprint: your own string for the optimizer and anything else a
        resume must match (e.g. `"adam 3e-3, cosine to 10k"`); stored and
        compared verbatim. None: no string is compared.

    Raises:
      TypeError, ValueError: a field has the wrong type or value; the
        message names the field.
    """

    directory: str | os.PathLike
    every: Optional[int] = None
    keep: int = 3
    resume: bool = True
    on_save: Optional[Callable[[int, Path], None]] = None
    optimizer: Any = None
    fingerprint: Optional[str] = None

    def __post_init__(self) -> None:
        where = "Checkpointing"
        set_ = object.__setattr__
        set_(self, "directory", _check_path(where, "directory", self.directory, optional=False))
        set_(self, "every", check_optional_size(f"{where}: every", self.every))
        set_(self, "keep", check_size(f"{where}: keep", self.keep))
        set_(self, "resume", check_bool(f"{where}: resume", self.resume))
        if self.on_save is not None:
            check_callable(f"{where}: on_save", self.on_save)
        if self.optimizer is not None and not (
            callable(getattr(self.optimizer, "init", None))
            and callable(getattr(self.optimizer, "update", None))
        ):
            raise TypeError(
                f"{where}: optimizer must be an optax.GradientTransformation or None; "
                f"got {self.optimizer!r}."
            )
        if self.fingerprint is not None and not isinstance(self.fingerprint, str):
            raise TypeError(
                f"{where}: fingerprint must be a str or None; got {self.fingerprint!r}."
            )


@dataclasses.dataclass(frozen=True)
class Logging:
    """What `fit` records and shows.

    Attributes:
      path: a file for the metrics as JSON lines (train and eval records,
        each with "kind" and "step"); on resume, records past the restored
        step are dropped first. None (default): no file.
      every: keep (and write) the train metrics of every `every`-th step,
        and of the last (default 1: every step).
      quiet: no progress bar (tests, batch jobs). The one-line notice of a
        resume is printed to stderr (and logged to the `lstmjax.train`
        logger) either way. Default False.

    Raises:
      TypeError, ValueError: a field has the wrong type or value; the
        message names the field.
    """

    path: Optional[str | os.PathLike] = None
    every: int = 1
    quiet: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "path", _check_path("Logging", "path", self.path, optional=True))
        set_(self, "every", check_size("Logging: every", self.every))
        set_(self, "quiet", check_bool("Logging: quiet", self.quiet))

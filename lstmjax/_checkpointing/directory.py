"""Creating the directories `fit` writes into, with errors that say what is in the way.

Kept apart from `storage` so that the metrics log can use it without loading orbax.
"""

from __future__ import annotations

from pathlib import Path


def make_directory(directory: Path, what: str = "checkpoint directory") -> None:
    """Create `directory` (and its parents) or raise saying what is in the way."""
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(
            f"{what} {directory} is an existing file, not a directory; pass a directory "
            "path (created if missing), or move the file away."
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in directory.parents if p.exists() and not p.is_dir()), None)
        raise NotADirectoryError(
            f"cannot create {what} {directory}: "
            + (f"{blocking} is a file, not a directory." if blocking else "a part of it is a file.")
        ) from None
    except OSError as error:
        raise type(error)(
            error.errno,
            f"cannot create {what} {directory}: {error.strerror} (at {error.filename}); "
            "choose a directory you can write to",
        ) from None

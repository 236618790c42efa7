"""The metrics log of `fit`: one JSON object per line, appended and flushed per record."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Optional

from lstmjax._checkpointing.directory import make_directory
from lstmjax._checkpointing.errors import CheckpointWarning


class JsonLinesLog:
    """Append-only JSON-lines file; one object per line, flushed every write.

    Args:
      path: the file, or None for no log.
      resume_from: None starts the file afresh; a step keeps the records up to
        it and drops later ones (they are about to be redone). A torn last
        line (a run killed mid-write) is dropped with a warning; a damaged
        line before the last is an error naming it.
    """

    def __init__(self, path: Optional[str | os.PathLike], resume_from: Optional[int]):
        self.path = None if path is None else Path(path)
        if self.path is None:
            return
        if self.path.is_dir():
            raise IsADirectoryError(
                f"the metrics log path {self.path} is an existing directory; Logging(path=...) "
                "takes a file path (e.g. runs/metrics.jsonl)."
            )
        make_directory(self.path.parent, "directory of the metrics log")
        if resume_from is None:
            self.path.write_text("")
        else:
            self._truncate_after(resume_from)

    def _truncate_after(self, step: int) -> None:
        """Drop records past the resumed step, and a torn last line."""
        assert self.path is not None  # called with a path only (__init__)
        if not self.path.exists():
            return
        lines = self.path.read_text(errors="replace").split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        kept = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if number < len(lines):
                    raise ValueError(
                        f"metrics log {self.path}, line {number}, is not JSON ({line[:60]!r}); "
                        "only a torn last line is repaired. Fix or remove the file, or pass "
                        "another Logging(path=...)."
                    ) from None
                warnings.warn(
                    f"repaired metrics log {self.path}: its last line (line {number}) was torn "
                    f"({line[:60]!r}), probably by a run killed mid-write; dropped it.",
                    CheckpointWarning,
                    stacklevel=4,
                )
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")

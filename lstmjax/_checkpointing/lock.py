"""One writer per checkpoint directory: an advisory file lock that names its owner.

Two `fit` runs writing one directory would delete each other's steps (keep
the last k) and interleave their saves. The first writer takes an exclusive
`fcntl.flock` on `<directory>/.lstmjax.lock` and writes its pid, host and
start time into it; a second writer finds the lock held and is refused
before it does anything, with a message naming the owner.

Why `flock` rather than a pid file alone: the kernel releases the lock when
its process dies, however it dies (SIGKILL included), so a crashed run never
blocks the next one. The pid written in the file is only for messages: when
the lock is free but the file still names a process that did not release it
cleanly, the new writer takes over and says so in a warning.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Optional

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; see `DirectoryLock.acquire`
    fcntl = None

from lstmjax._checkpointing.errors import CheckpointLockedError, CheckpointWarning

LOCK_NAME = ".lstmjax.lock"


def _describe(owner: dict) -> str:
    started = owner.get("started")
    since = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if started else ""
    return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}{since}"


class DirectoryLock:
    """The exclusive writer lock of one checkpoint directory.

    Args:
      directory: the checkpoint directory (it must exist).
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_NAME
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Take the lock or raise `CheckpointLockedError` naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            warnings.warn(
                f"file locks are not available on this platform: a second writer of "
                f"{self.path.parent} will not be detected.",
                CheckpointWarning,
                stacklevel=4,
            )
            self._fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            owner = _read(fd)
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise CheckpointLockedError(
                    f"checkpoint directory {self.path.parent} is in use by another writer "
                    f"({_describe(owner)}); wait for that run to finish, stop it, or use "
                    "another checkpoint directory."
                ) from None
            warnings.warn(
                f"cannot lock {self.path} ({error.strerror}; the file system may not support "
                "locks): a second writer of this directory will not be detected.",
                CheckpointWarning,
                stacklevel=4,
            )
            self._fd = None
            return
        previous = _read(fd)
        if previous.get("pid") is not None:
            # The lock was free, yet a writer's record is still there: that writer
            # ended without releasing it (killed, or the machine went down).
            warnings.warn(
                f"taking over the lock of checkpoint directory {self.path.parent} from "
                f"{_describe(previous)}, which is no longer running (it ended without "
                "releasing it, e.g. killed).",
                CheckpointWarning,
                stacklevel=4,
            )
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Clear the owner record and drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # a clean release leaves no owner to warn about
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def _read(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        owner = json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}

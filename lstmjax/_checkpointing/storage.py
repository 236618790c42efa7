"""What a checkpoint step is on disk: orbax I/O, the stored form of a state, the commit.

orbax-checkpoint writes the arrays (their raw bytes, so a restore is
bit-exact, sharded arrays included); this module holds everything that
touches it, so that `fit` loads orbax only when it checkpoints.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, NamedTuple, Optional, TypeGuard

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from lstmjax._checkpointing.integrity import MANIFEST
from lstmjax._training.state import TrainState
from lstmjax._typing import Array

FORMAT = "lstmjax.TrainState/2"
STEP_NAME = re.compile(r"^\d+$")
LEFTOVER = re.compile(r"^\.\d+\.(saving|old)")  # a save or replace that never finished
OURS = ("_CHECKPOINT_METADATA", "state", "meta", MANIFEST)  # what every step holds


class Restored(NamedTuple):
    """What `Checkpointer.restore` returns.

    Attributes:
      state: the restored `TrainState`, placed like the `like` state.
      step: the checkpoint's step.
      data_position: where the data source stands (the next batch index for
        `fit`, which equals `int(state.step)`), or whatever the caller saved.
      skipped: `(step, what is wrong)` of each newer step that was skipped
        because it is damaged or not a checkpoint, newest first.
      compared: what of the optimizer's identity was compared (e.g.
        `["state structure", "probe of its updates"]`).
    """

    state: TrainState
    step: int
    data_position: Any
    skipped: tuple = ()
    compared: tuple = ()


class DamagedError(Exception):
    """Internal: one step cannot be restored; the message says why."""

    def __init__(self, reason: str, stray: bool = False):
        super().__init__(reason)
        self.reason, self.stray = reason, stray


def is_key(x: Any) -> TypeGuard[Array]:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


class StateWithoutCarry(NamedTuple):
    """A `TrainState` as stored before it had a carry field (same names, same order)."""

    params: Any
    opt_state: Any
    step: Any
    rng: Any


def storable(state: TrainState) -> Any:
    """Typed PRNG keys are stored as their raw uint32 data.

    A state without a stream carry (`carry=None`) is stored with the four
    fields it had before the carry existed, so older checkpoints restore.
    """
    rng = jax.random.key_data(state.rng) if is_key(state.rng) else state.rng
    state = state._replace(rng=rng)
    return StateWithoutCarry(*state[:4]) if state.carry is None else state


def short(error: BaseException) -> str:
    """One line of a dependency's error, for inclusion in ours."""
    text = " ".join(str(error).split()).split(" See full TensorStore details")[0]
    return f"{type(error).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def read(checkpointer: ocp.Checkpointer, path: Path, args) -> tuple[Any, Optional[str]]:
    """`(restored, None)`, or `(None, what went wrong)` when orbax cannot read `path`.

    A failed read can leave orbax's other pending reads as coroutines that
    are freed only later, each then printing "Exception ignored in:
    <coroutine ...>" (or failing an unrelated test under pytest). They are
    freed here, at once, and those orbax leftovers dropped; anything else
    still reaches the usual `sys.unraisablehook`.
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if code is None or "orbax" not in code.co_filename:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        try:
            return checkpointer.restore(path, args=args), None
        except Exception as error:  # orbax, TensorStore and json raise many types
            failure = short(error)
        gc.collect()
        return None, failure
    finally:
        sys.unraisablehook = previous


def write_failure(error: BaseException) -> Optional[tuple[Optional[int], str]]:
    """`(errno, what)` when `error` is a failed file write (a full disk, ...), else None.

    orbax raises an `OSError` from its own files, and TensorStore (which
    writes the arrays) a `ValueError` whose message ends with
    `[os_error_code='28']`.
    """
    if isinstance(error, OSError):
        return error.errno, error.strerror or str(error)
    found = re.search(r"os_error_code='(\d+)'", str(error))
    if isinstance(error, ValueError) and found:
        code = int(found.group(1))
        return code, os.strerror(code)
    return None


def write(checkpointer: ocp.Checkpointer, path: Path, args) -> None:
    """orbax's save of `path`, its leftover coroutines freed at once if it fails (see `read`)."""
    previous = sys.unraisablehook

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if code is None or "orbax" not in code.co_filename:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        try:
            checkpointer.save(path, args=args)
        except Exception:
            gc.collect()
            raise
    finally:
        sys.unraisablehook = previous


def orbax_checkpointer() -> ocp.Checkpointer:
    handler = ocp.CompositeCheckpointHandler(
        state=ocp.StandardCheckpointHandler(), meta=ocp.JsonCheckpointHandler()
    )
    return ocp.Checkpointer(handler)


def looks_like_ours(path: Path) -> bool:
    return any((path / name).exists() for name in OURS)


def commit(staging: Path, final: Path) -> None:
    """Publish a fully written step: one rename (the commit point of a save)."""
    if final.exists():  # re-saving a step: move the old one out first, then drop it
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old)
    else:
        staging.rename(final)


def sync(name: str) -> None:
    """Wait for every process (multi-process runs) so no one reads a step before its rename."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)

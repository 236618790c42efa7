"""Checkpoints of the whole training state that know whether they are intact.

A checkpoint holds a `TrainState` (params, optimizer state, step, PRNG key)
and a JSON record, in `<directory>/<step>/`. orbax-checkpoint writes the
arrays (it stores every array's raw bytes, so a restore is bit-exact, and it
saves sharded arrays); lstmjax adds what makes a step trustworthy:

- **Atomic commit.** A step is written into `.<step>.saving/` and renamed to
  `<step>/` only when complete; a process killed mid-save leaves the
  previous steps untouched, and the next writer removes the leftover.
- **Content checksums, twice.** Last before the commit, a file list
  (`lstmjax_manifest.json`) records every file's size and SHA-256; a
  restore checks it before orbax reads anything, so a truncated, emptied,
  deleted or altered file is named as such. The JSON record also holds each
  array leaf's shape, dtype and SHA-256, recomputed from the arrays read
  back: one flipped bit (which orbax's compressed chunks decode into wrong
  values without a word) is found even behind a matching file list. No raw
  orbax, TensorStore or `json` error reaches the caller. Cost: the state's
  bytes are hashed twice per save and twice per restore.
- **Newest intact step.** `restore()` without a step skips damaged steps
  with a `CheckpointWarning` naming each and what is wrong, and restores the
  newest intact one (`CheckpointCorruptError` if none is). Directories named
  like a step that hold no checkpoint are ignored with a warning.
- **Optimizer identity.** The optimizer state's structure, and optionally
  a user fingerprint and a probe of the optimizer's updates
  (`lstmjax._checkpointing.fingerprint`), are stored; a restore into
  another optimizer is refused with a message naming both.
- **One writer.** A writing `Checkpointer` holds the directory's lock
  (`lstmjax._checkpointing.lock`); a second one is refused at once.

Saving is synchronous: `save` returns once the step is committed. It
refuses non-finite parameters or optimizer state.
"""

from lstmjax._checkpointing.checkpointer import Checkpointer as Checkpointer
from lstmjax._checkpointing.checkpointer import latest_step as latest_step
from lstmjax._checkpointing.errors import CheckpointCorruptError as CheckpointCorruptError
from lstmjax._checkpointing.errors import CheckpointLockedError as CheckpointLockedError
from lstmjax._checkpointing.errors import CheckpointMismatchError as CheckpointMismatchError
from lstmjax._checkpointing.errors import CheckpointWarning as CheckpointWarning
from lstmjax._checkpointing.errors import NonFiniteStateError as NonFiniteStateError
from lstmjax._checkpointing.errors import OptimizerMismatchError as OptimizerMismatchError
from lstmjax._checkpointing.fingerprint import OptimizerIdentity as OptimizerIdentity
from lstmjax._checkpointing.fingerprint import optimizer_identity as optimizer_identity
from lstmjax._checkpointing.integrity import check_fits as check_fits
from lstmjax._checkpointing.integrity import leaf_name as leaf_name
from lstmjax._checkpointing.storage import Restored as Restored

__all__ = [
    "CheckpointCorruptError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "CheckpointWarning",
    "Checkpointer",
    "NonFiniteStateError",
    "OptimizerIdentity",
    "OptimizerMismatchError",
    "Restored",
    "check_fits",
    "latest_step",
    "leaf_name",
    "optimizer_identity",
]

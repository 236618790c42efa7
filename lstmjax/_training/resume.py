"""How `fit` picks up a run from its checkpoint directory, and says so.

The newest intact step is restored (damaged newer ones are skipped with a
warning and renamed `<step>.damaged`, so this run's saves cannot collide
with them); step-named directories that hold no checkpoint are renamed
`<step>.not-a-checkpoint` with a warning. The optimizer's identity is
checked; the resume is announced on stderr and in the `lstmjax.train` log.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import NamedTuple, Optional

from tqdm import tqdm

from lstmjax._checkpointing.errors import CheckpointWarning
from lstmjax._checkpointing.fingerprint import OptimizerIdentity
from lstmjax._training.processes import is_primary
from lstmjax._training.state import TrainState, step_number

logger = logging.getLogger("lstmjax.train")


class Resumed(NamedTuple):
    """The state to train from and the step it was restored from (None: a fresh start)."""

    state: TrainState
    step: Optional[int]


def announce(message: str) -> None:
    """Say something about the run, on stderr (above a progress bar) and in the log.

    With several processes, only process 0 speaks (they all resume alike).
    """
    if not is_primary():
        return
    logger.info(message)
    tqdm.write(message, file=sys.stderr)


def _set_aside_strays(checkpointer) -> None:
    for step in checkpointer.stray_steps():
        moved = checkpointer.set_aside(step)
        warnings.warn(
            f"ignoring {checkpointer.path(step)}: named like a step but not an lstmjax "
            f"checkpoint (it holds none of a checkpoint's files); renamed it to {moved.name}.",
            CheckpointWarning,
            stacklevel=4,
        )


def resume_run(
    checkpointer,
    state: TrainState,
    *,
    resume: bool,
    num_steps: int,
    identity: Optional[OptimizerIdentity],  # None without a checkpointer
) -> Resumed:
    """Restore the newest intact checkpoint of `checkpointer` into `state`'s shape, if any."""
    if checkpointer is None:
        return _fresh(state, num_steps)
    if checkpointer.steps() and not resume:
        # Mixing two runs in one directory would let "keep the last k" delete the new one.
        raise ValueError(
            f"{checkpointer.directory} already holds checkpoints {checkpointer.steps()}; "
            "pass Checkpointing(..., resume=True) to continue that run, or use an empty "
            "directory."
        )
    _set_aside_strays(checkpointer)
    if not checkpointer.steps():
        return _fresh(state, num_steps)
    restored = checkpointer.restore(state, optimizer=identity)
    for step, _ in restored.skipped:
        if step > restored.step:
            moved = checkpointer.set_aside(step)
            warnings.warn(
                f"renamed the damaged {checkpointer.path(step)} to {moved.name}, so that this "
                f"run, resumed from step {restored.step}, can save its own step {step}.",
                CheckpointWarning,
                stacklevel=4,
            )
    where = checkpointer.path(restored.step)
    if restored.data_position != step_number(restored.state):
        raise ValueError(
            f"checkpoint {where} records data position {restored.data_position!r}, "
            f"but fit expects it to equal the step {step_number(restored.state)} (fit saves "
            "it so; this step was saved with Checkpointer.save(..., data_position=...)). "
            "Restore it with Checkpointer.restore and continue in your own loop, or give fit "
            "a new checkpoint directory."
        )
    check_progress(
        restored.step, num_steps, f"checkpoint {where}", "use another checkpoint directory"
    )
    checked = ", ".join(restored.compared)
    if identity is None or (identity.probe is None and identity.fingerprint is None):
        checked += "; pass Checkpointing(optimizer=...) to check its hyperparameters too"
    announce(f"fit: resumed from {where} (step {restored.step}; optimizer checked: {checked}).")
    if restored.step == num_steps:
        announce(
            f"fit: the checkpoint is already at num_steps={num_steps}; nothing to train, "
            "returning its state (history empty). Raise num_steps to train further."
        )
    return Resumed(restored.state, restored.step)


def check_progress(step: int, num_steps: int, what: str, otherwise: str) -> None:
    """Refuse a start past `num_steps`.

    `what` is where the start comes from (the state passed to `fit`, or the
    checkpoint it resumed from), `otherwise` the other way out than raising
    `num_steps`.
    """
    if step > num_steps:
        raise ValueError(
            f"{what} is at step {step}, past num_steps={num_steps} (num_steps counts the "
            f"run's updates, not this call's): pass num_steps > {step} to train on, or "
            f"{otherwise}."
        )


def _fresh(state: TrainState, num_steps: int) -> Resumed:
    """No checkpoint to resume from: the state as passed, its step checked against num_steps."""
    step = step_number(state)
    check_progress(step, num_steps, "fit: the state", "start from init_state(...)")
    if step == num_steps > 0:
        announce(
            f"fit: the state is already at num_steps={num_steps}; nothing to train, "
            "returning it (history empty). Raise num_steps to train further."
        )
    return Resumed(state, None)

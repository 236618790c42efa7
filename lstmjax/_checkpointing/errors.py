"""The errors and the warning that `lstmjax.checkpoint` raises, in one place."""


class NonFiniteStateError(ValueError):
    """Raised instead of saving a state that holds NaN or infinite values."""


class CheckpointMismatchError(ValueError):
    """Raised when a checkpoint does not fit the state it is restored into."""


class OptimizerMismatchError(ValueError):
    """The checkpoint was written by a different optimizer or hyperparameters."""


class CheckpointCorruptError(RuntimeError):
    """A checkpoint step is damaged (or, with `restore()`, no step is intact)."""


class CheckpointLockedError(RuntimeError):
    """Another process is writing checkpoints into the same directory."""


class CheckpointWarning(UserWarning):
    """A damaged step or a stray directory was skipped, a lock was taken over, ..."""


def mismatch_advice(directory, how_to_continue: str) -> str:
    """What to do when a checkpoint does not fit this run: the end of every mismatch's message.

    Two ways out, both of which `fit` allows: a fresh start in another
    directory (not `resume=False` in this one, which `fit` refuses while it
    holds checkpoints), or the stored run continued with its own settings
    (`how_to_continue`, a phrase). `directory`: the checkpoint directory, or
    None where it is not known.
    """
    delete = "delete the old one" if directory is None else f"delete {directory}"
    return (
        f" To train with the new settings from scratch, use a new checkpoint directory (or "
        f"{delete}; Checkpointing(..., resume=False) refuses a directory that holds "
        f"checkpoints, so that two runs never mix). To continue the stored run, "
        f"{how_to_continue}."
    )


# Shown as `lstmjax.checkpoint.X` in tracebacks: where users import them from.
for _cls in (
    NonFiniteStateError,
    CheckpointMismatchError,
    OptimizerMismatchError,
    CheckpointCorruptError,
    CheckpointLockedError,
    CheckpointWarning,
):
    _cls.__module__ = "lstmjax.checkpoint"
del _cls

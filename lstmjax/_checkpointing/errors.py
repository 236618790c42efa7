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

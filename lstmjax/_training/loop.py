"""`fit`: the Python loop around a jitted step, with logs, checkpoints and resume.

Everything that talks to the outside world (progress bar, JSON lines,
checkpoints, the divergence check) lives here, outside `jit`. The data
source is a function of the step number, so a resumed run asks for exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from tqdm import tqdm

from lstmjax._training.metrics_log import JsonLinesLog
from lstmjax._training.resume import resume_run
from lstmjax._training.step import Batch, TrainState

StepFn = Callable[[TrainState, Batch], tuple[TrainState, dict]]


class TrainingDiverged(RuntimeError):  # noqa: N818 (the name is part of the contract)
    """The loss or the gradient became non-finite.

    Attributes:
      step: index of the batch (and update) that produced non-finite values.
      metrics: that step's metrics, as Python numbers.
      checkpoint: directory of the last good checkpoint, or None.
      state: the last good state in memory (the failed update was not applied).
    """

    def __init__(self, step: int, metrics: dict, checkpoint: Optional[Path], state: TrainState):
        self.step, self.metrics, self.checkpoint, self.state = step, metrics, checkpoint, state
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was saved"
        super().__init__(
            f"training diverged at step {step} (the update on batch_fn({step})): "
            f"loss={metrics.get('loss')}, grad_norm={metrics.get('grad_norm')}; "
            f"the update was not applied; {where}."
        )


class History(NamedTuple):
    """Metrics of one `fit` call, one dict per record, each with its "step".

    Attributes:
      train: a record every `log_every` steps: loss, grad_norm, grad_norms, ...
      eval: a record every `eval_every` steps from `eval_fn`.
      resumed_from: the checkpoint step this call resumed from, or None.
    """

    train: list
    eval: list
    resumed_from: Optional[int] = None


def to_python(tree: Any) -> Any:
    """Device arrays -> Python floats/ints/bools (nested dicts kept), for JSON."""

    def one(x):
        x = np.asarray(x)
        if x.dtype != np.bool_ and not np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float64)  # bfloat16 & co. give Python floats this way
        return x.tolist()  # a Python scalar, or lists of one per ensemble member

    return jax.tree_util.tree_map(one, jax.device_get(tree))


def _is_finite(metrics: dict) -> bool:
    """Scalars, or lists of one value per ensemble member: every one must be finite."""
    finite = np.all(metrics.get("finite", True))
    return bool(
        finite
        and np.all(np.isfinite(metrics["loss"]))
        and np.all(np.isfinite(metrics["grad_norm"]))
    )


def fit(
    step_fn: StepFn,
    state: TrainState,
    batch_fn: Callable[[int], Batch],
    num_steps: int,
    *,
    eval_fn: Optional[Callable[[Any], dict]] = None,
    eval_every: Optional[int] = None,
    log_path: Optional[str | os.PathLike] = None,
    log_every: int = 1,
    checkpoint_dir: Optional[str | os.PathLike] = None,
    checkpoint_every: Optional[int] = None,
    keep: int = 3,
    resume: bool = True,
    quiet: bool = False,
    on_checkpoint: Optional[Callable[[int, Path], None]] = None,
    optimizer: Optional[Any] = None,
    optimizer_fingerprint: Optional[str] = None,
    metrics_lag: int = 2,
) -> tuple[TrainState, History]:
    """Train until `state.step == num_steps`, resuming from a checkpoint if one exists.

    Args:
      step_fn: `(state, batch) -> (state, metrics)`, e.g. `make_train_step(...)`.
      state: the initial state (`init_state(...)`); with `resume`, it is also
        the template the latest checkpoint is restored into.
      batch_fn: `step -> (xs, ys)`, the batch for update number `step`. It must
        depend on `step` alone (e.g. fold the step into a fixed key), so that
        a resumed run sees the same data as an uninterrupted one.
      num_steps: total number of updates of the run (not of this call).
      eval_fn: `params -> dict of scalars`, run every `eval_every` steps and at
        the end (e.g. `lambda p: eval_step(p, validation_batch)`).
      eval_every: evaluation period in steps.
      log_path: a file for metrics as JSON lines (train and eval records, each
        with "kind" and "step"); on resume, records past the restored step are
        dropped first.
      log_every: keep (and write) the train metrics of every `log_every`-th step.
      checkpoint_dir: where checkpoints go; None for no checkpoints.
      checkpoint_every: save every this many steps, and at the end.
      keep: number of checkpoints kept.
      resume: restore the newest intact checkpoint in `checkpoint_dir` if
        any (see "Resuming" below); with False, a `checkpoint_dir` that
        already holds checkpoints is an error.
      quiet: no progress bar (tests, batch jobs). The one-line notice of a
        resume is printed to stderr (and logged to the `lstmjax.train`
        logger) either way.
      on_checkpoint: called as `on_checkpoint(step, path)` after each save.
      optimizer: the `optax.GradientTransformation` the step uses. Given, its
        behaviour is fingerprinted (three updates on a fixed probe, see
        `lstmjax._checkpointing.fingerprint`) and stored with each checkpoint,
        so resuming with another optimizer or another learning rate is
        refused. None: only the optimizer state's structure is checked.
      optimizer_fingerprint: your own string for the optimizer and anything
        else a resume must match (e.g. `"adam 3e-3, cosine to 10k"`); stored
        and compared verbatim. None: no string is compared.
      metrics_lag: read each step's metrics (and check it for divergence)
        only after this many later steps are dispatched, so that the device
        never waits for the host (see "Speed" below). Each step of lag keeps
        one more `TrainState` alive, for `TrainingDiverged.state`; 0 reads
        every step before the next (least memory, slowest).

    Resuming: the newest checkpoint that is intact (checksums verified) is
    restored; newer damaged steps are named in a `CheckpointWarning` and
    renamed `<step>.damaged`, step-named directories that are no checkpoint
    are renamed `<step>.not-a-checkpoint`; `CheckpointCorruptError` if no
    step is intact. The resume is announced (directory, step). A checkpoint
    at `num_steps` is a no-op that says so; one past `num_steps` is an error.
    A torn last line of `log_path` is dropped with a warning. Only one
    `fit` may write a `checkpoint_dir` at a time (`CheckpointLockedError`).

    Speed: reading metrics makes the host wait for the device, so `fit`
    reads them `metrics_lag` steps late, while later steps run; it waits at
    once only where a save or an evaluation needs the state. A divergence
    still stops the run before anything non-finite is saved, logged as good
    or returned; the steps already dispatched past it are discarded.

    Returns:
      `(state, history)`: the final state and this call's metrics.

    Raises:
      TrainingDiverged: a step gave a non-finite loss, gradient or parameters.
        The message names the step and the last good checkpoint; no
        non-finite state is ever saved.
      CheckpointLockedError: another writer holds the checkpoint directory.
      CheckpointCorruptError: no intact checkpoint to resume from.
      CheckpointMismatchError: the checkpoint's state does not fit this run.
      OptimizerMismatchError: the checkpoint was written by another optimizer.
    """
    from lstmjax._checkpointing.fingerprint import optimizer_identity
    from lstmjax.checkpoint import Checkpointer  # orbax is imported only when needed

    for name, value in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        if value is not None:
            _check_count(name, value)
    _check_count("log_every", log_every)
    _check_count("num_steps", num_steps, minimum=0)
    _check_count("metrics_lag", metrics_lag, minimum=0)
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("checkpoint_every needs a checkpoint_dir.")
    checkpointer = None if checkpoint_dir is None else Checkpointer(checkpoint_dir, keep=keep)
    try:
        identity = None
        if checkpointer is not None:
            identity = optimizer_identity(
                state.opt_state, optimizer, optimizer_fingerprint, state.params
            )
        state, resumed = resume_run(
            checkpointer, state, resume=resume, num_steps=num_steps, identity=identity
        )
        primary = jax.process_index() == 0  # several processes: only process 0 speaks
        loop = _Loop(
            step_fn=step_fn,
            batch_fn=batch_fn,
            num_steps=num_steps,
            eval_fn=eval_fn,
            eval_every=eval_every,
            log=JsonLinesLog(log_path if primary else None, resumed),
            log_every=log_every,
            checkpointer=checkpointer,
            checkpoint_every=checkpoint_every,
            on_checkpoint=on_checkpoint,
            identity=identity,
            resumed=resumed,
            metrics_lag=metrics_lag,
        )
        state = loop.run(state, quiet or not primary)
    finally:
        if checkpointer is not None:
            checkpointer.close()
    return state, loop.history


def _check_count(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")


def _due(done: int, every: Optional[int], last: int) -> bool:
    """Whether a periodic action (every `every` steps, and at the end) falls on `done`."""
    return done == last or (every is not None and done % every == 0)


class _Loop:
    """The body of `fit`: one method per concern."""

    def __init__(self, *, step_fn, batch_fn, num_steps, eval_fn, eval_every, log, log_every,
                 checkpointer, checkpoint_every, on_checkpoint, identity=None,
                 resumed=None, metrics_lag=0):  # fmt: skip
        self.step_fn, self.batch_fn, self.num_steps = step_fn, batch_fn, num_steps
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.log, self.log_every = log, log_every
        self.checkpointer, self.checkpoint_every = checkpointer, checkpoint_every
        self.on_checkpoint, self.identity = on_checkpoint, identity
        self.metrics_lag = metrics_lag
        self.history = History(train=[], eval=[], resumed_from=resumed)
        self.last_good: Optional[Path] = None
        if checkpointer is not None and resumed is not None:
            self.last_good = checkpointer.path(resumed)

    def run(self, state: TrainState, quiet: bool) -> TrainState:
        """Step to `num_steps`, reading each step's metrics while later ones run.

        Reading metrics makes the host wait for the device; reading step i's
        only after step i + metrics_lag is dispatched lets the device work
        meanwhile (on CPU this was most of fit's overhead over a bare loop;
        a lag of 2 rather than 1 absorbs the host being descheduled on a busy
        machine). A step whose
        state a save or an evaluation needs is read at once, so nothing is
        saved or evaluated before its step is known to be finite.
        """
        start = int(state.step)
        bar = _Progress(start, self.num_steps, quiet)
        pending = deque()  # (index, device metrics, state before it) of steps not yet read
        try:
            for step in range(start, self.num_steps):
                new_state, metrics = self.step_fn(state, self.batch_fn(step))
                pending.append((step, metrics, state))
                state = new_state
                if self._needs_state(step + 1):
                    while pending:
                        self._settle(pending.popleft(), bar)
                    self._use_state(state, step + 1)
                while len(pending) > self.metrics_lag:
                    self._settle(pending.popleft(), bar)
            while pending:
                self._settle(pending.popleft(), bar)
        finally:
            bar.close()
        return state

    def _settle(self, pending: tuple, bar: _Progress) -> None:
        """Read a step's metrics: stop on divergence, else record them."""
        step, metrics, before = pending
        metrics = to_python(metrics)
        if not _is_finite(metrics):
            raise TrainingDiverged(step, metrics, self.last_good, before)
        done = step + 1
        if done % self.log_every == 0 or done == self.num_steps:
            self._record("train", done, metrics, self.history.train)
        bar.update(done, metrics["loss"])

    def _needs_state(self, done: int) -> bool:
        return (self.eval_fn is not None and _due(done, self.eval_every, self.num_steps)) or (
            self.checkpointer is not None and _due(done, self.checkpoint_every, self.num_steps)
        )

    def _use_state(self, state: TrainState, done: int) -> None:
        if self.eval_fn is not None and _due(done, self.eval_every, self.num_steps):
            evaluation = to_python(self.eval_fn(state.params))
            self._record("eval", done, evaluation, self.history.eval)
        if self.checkpointer is not None and _due(done, self.checkpoint_every, self.num_steps):
            self.last_good = self.checkpointer.save(
                state, data_position=done, optimizer=self.identity
            )
            if self.on_checkpoint is not None:
                self.on_checkpoint(done, self.last_good)

    def _record(self, kind: str, step: int, metrics: dict, into: list) -> None:
        record = {"step": step, **metrics}
        into.append(record)
        self.log.write({"kind": kind, **record})


class _Progress:
    """A tqdm bar with the loss and the recent rate in steps per second."""

    def __init__(self, start: int, total: int, quiet: bool):
        self.quiet, self.start, self.total = quiet, start, total
        self.bar = tqdm(total=total, initial=start, unit="step", disable=quiet, dynamic_ncols=True)
        self.tick, self.tick_step = time.perf_counter(), start

    def update(self, done: int, loss: float) -> None:
        self.bar.update(1)
        now = time.perf_counter()
        # Refresh twice a second, and on the first and last step. The rate is
        # over the last window, not since the start, which included compilation.
        if not self.quiet and (now - self.tick > 0.5 or done in (self.start + 1, self.total)):
            rate = (done - self.tick_step) / max(now - self.tick, 1e-9)
            shown = f"{np.mean(loss):.4g}" + (" (mean)" if np.ndim(loss) else "")
            self.bar.set_postfix(loss=shown, steps_per_s=f"{rate:.1f}")
            self.tick, self.tick_step = now, done

    def close(self) -> None:
        self.bar.close()

"""`fit`: the Python loop around a jitted step, with logs, checkpoints and resume.

Everything that talks to the outside world (progress bar, JSON lines,
checkpoints, the divergence check) lives here, outside `jit`. The data
source is a function of the step number, so a resumed run asks for exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from tqdm import tqdm

from lstmjax._checkpointing.fingerprint import optimizer_identity
from lstmjax._checks import check_callable, check_optional_size, check_size
from lstmjax._training.metrics_log import JsonLinesLog
from lstmjax._training.options import Checkpointing, Logging
from lstmjax._training.processes import is_primary
from lstmjax._training.resume import resume_run
from lstmjax._training.state import TrainState, step_number
from lstmjax._training.step import StepFn
from lstmjax._typing import Batch

DEFAULT_LOGGING = Logging()  # frozen, so one shared default is safe


class TrainingDiverged(RuntimeError):  # noqa: N818 (the name is part of the contract)
    """The loss or the gradient became non-finite.

    Attributes:
      step: index of the batch (and update) that produced non-finite values.
      metrics: that step's metrics, as Python numbers.
      checkpoint: directory of the last good checkpoint, or None.
      state: the last good state in memory (the failed update was not applied).
      members: for a population, the indices of the members that diverged
        (the others' updates of this step were applied); None for one model.
    """

    def __init__(
        self,
        step: int,
        metrics: dict,
        checkpoint: Optional[Path],
        state: TrainState,
        members: Optional[list[int]] = None,
    ):
        self.step, self.metrics, self.checkpoint, self.state = step, metrics, checkpoint, state
        self.members = members
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was saved"
        who = ""
        if members:
            count = len(np.atleast_1d(metrics["loss"]))
            who = f" in member{'s' if len(members) > 1 else ''} {members} of {count}"
        super().__init__(
            f"training diverged at step {step}{who} (the update on batch_fn({step})): "
            f"loss={metrics.get('loss')}, grad_norm={metrics.get('grad_norm')}; "
            f"the update was not applied; {where}."
        )


class History(NamedTuple):
    """Metrics of one `fit` call, one dict per record, each with its "step".

    Attributes:
      train: a record every `Logging.every` steps: loss, grad_norm, grad_norms, ...
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


def _diverged(metrics: dict) -> Optional[list[int]]:
    """None when every value is finite; else the diverged members (`[]` for one model).

    Metrics are scalars, or lists with one entry per member of a population
    (a member diverges when any of its entries, e.g. of its chunks, does).
    """
    ok = np.asarray(metrics.get("finite", True), bool)
    for name in ("loss", "grad_norm"):
        ok = ok & np.isfinite(np.asarray(metrics[name], np.float64))
    if ok.all():
        return None
    if ok.ndim == 0:
        return []
    return np.flatnonzero(~ok.reshape(ok.shape[0], -1).all(axis=1)).tolist()


def fit(
    step_fn: StepFn,
    state: TrainState,
    batch_fn: Callable[[int], Batch],
    num_steps: int,
    *,
    eval_fn: Optional[Callable[[Any], dict]] = None,
    eval_every: Optional[int] = None,
    logging: Logging = DEFAULT_LOGGING,
    checkpointing: Optional[Checkpointing] = None,
    metrics_lag: int = 2,
) -> tuple[TrainState, History]:
    """Train until `state.step == num_steps`, resuming from a checkpoint if one exists.

    Args:
      step_fn: `(state, batch) -> (state, metrics)`, e.g. `make_train_step(...)`
        or any transform of it (`jax.vmap`, `ensemble`, `tbptt.stream`,
        `distributed.shard`).
      state: the initial state (`init_state(...)`, or `jax.vmap` of it for a
        population); when resuming, it is also the template the latest
        checkpoint is restored into.
      batch_fn: `step -> (xs, ys)`, the batch for update number `step`. It must
        depend on `step` alone (e.g. fold the step into a fixed key), so that
        a resumed run sees the same data as an uninterrupted one.
      num_steps: total number of updates of the run (not of this call).
      eval_fn: `params -> dict of scalars`, run every `eval_every` steps and at
        the end (e.g. `lambda p: eval_step(p, validation_batch)`).
      eval_every: evaluation period in steps; None: at the end only.
      logging: a `Logging(path=None, every=1, quiet=False)`: the JSON-lines
        file, the period of train records, the progress bar.
      checkpointing: a `Checkpointing(directory, every=None, keep=3,
        resume=True, on_save=None, optimizer=None, fingerprint=None)`;
        None (default): no checkpoints.
      metrics_lag: read each step's metrics (and check it for divergence)
        only after this many later steps are dispatched, so that the device
        never waits for the host (see "Speed" below). Each step of lag keeps
        one more `TrainState` alive, for `TrainingDiverged.state`; 0 reads
        every step before the next (least memory, slowest).

    Populations: metrics of shape `[M]` (a vmapped or `ensemble` step) are
    kept and logged as lists, one entry per member; a divergence names the
    members that diverged. Every member must stand at the same step.

    Resuming: the newest checkpoint that is intact (checksums verified) is
    restored; newer damaged steps are named in a `CheckpointWarning` and
    renamed `<step>.damaged`, step-named directories that are no checkpoint
    are renamed `<step>.not-a-checkpoint`; `CheckpointCorruptError` if no
    step is intact. The resume is announced (directory, step). A checkpoint
    (or, without one, a state) at `num_steps` is a no-op that says so; one
    past `num_steps` is an error.
    A torn last line of the log file is dropped with a warning. Only one
    `fit` may write a checkpoint directory at a time (`CheckpointLockedError`).

    Speed: reading metrics makes the host wait for the device, so `fit`
    reads them `metrics_lag` steps late, while later steps run; it waits at
    once only where a save or an evaluation needs the state. A divergence
    still stops the run before anything non-finite is saved, logged as good
    or returned; the steps already dispatched past it are discarded.

    Returns:
      `(state, history)`: the final state and the metrics of this call's
      steps. A run that is already finished (resumed from a checkpoint at
      `num_steps`, or given a state at `num_steps`) trains nothing and runs
      no evaluation: `history.train` and `history.eval` are empty, and
      `history.resumed_from` says where it stood. Evaluate `state.params`
      for the finished model's metrics, or read earlier calls' records from
      the `Logging(path=...)` file.

    Raises:
      TrainingDiverged: a step gave a non-finite loss, gradient or parameters.
        The message names the step (and the members) and the last good
        checkpoint; no non-finite state is ever saved.
      CheckpointLockedError: another writer holds the checkpoint directory.
      CheckpointCorruptError: no intact checkpoint to resume from.
      CheckpointMismatchError: the checkpoint's state does not fit this run
        (another model, optimizer or dtype); the message says what to do.
      OptimizerMismatchError: the checkpoint was written by another optimizer
        or other hyperparameters; the message says what to do.
      ValueError: the state or the checkpoint is past `num_steps`, or the
        directory holds checkpoints and `resume=False`.
    """
    from lstmjax._checkpointing.checkpointer import Checkpointer  # orbax only when needed

    check_callable("fit: step_fn", step_fn)
    check_callable("fit: batch_fn", batch_fn)
    if eval_fn is not None:
        check_callable("fit: eval_fn", eval_fn)
    if not isinstance(state, TrainState):
        raise TypeError(
            f"fit: state must be a train.TrainState (train.init_state(...)); got "
            f"{type(state).__name__}."
        )
    eval_every = check_optional_size("eval_every", eval_every)
    num_steps = check_size("num_steps", num_steps, minimum=0)
    metrics_lag = check_size("metrics_lag", metrics_lag, minimum=0)
    if not isinstance(logging, Logging):
        raise TypeError(f"fit: logging must be a train.Logging(...); got {logging!r}.")
    if checkpointing is not None and not isinstance(checkpointing, Checkpointing):
        raise TypeError(
            f"fit: checkpointing must be a train.Checkpointing(...) or None; got {checkpointing!r}."
        )
    ckpt = checkpointing
    checkpointer = None if ckpt is None else Checkpointer(ckpt.directory, keep=ckpt.keep)
    try:
        identity = None
        if ckpt is not None:
            identity = optimizer_identity(
                state.opt_state, ckpt.optimizer, ckpt.fingerprint, state.params
            )
        state, resumed = resume_run(
            checkpointer,
            state,
            resume=ckpt is None or ckpt.resume,
            num_steps=num_steps,
            identity=identity,
        )
        primary = is_primary()  # several processes: only process 0 speaks
        loop = _Loop(
            step_fn=step_fn,
            batch_fn=batch_fn,
            num_steps=num_steps,
            eval_fn=eval_fn,
            eval_every=eval_every,
            log=JsonLinesLog(logging.path if primary else None, resumed),
            log_every=logging.every,
            checkpointer=checkpointer,
            checkpoint_every=None if ckpt is None else ckpt.every,
            on_checkpoint=None if ckpt is None else ckpt.on_save,
            identity=identity,
            resumed=resumed,
            metrics_lag=metrics_lag,
        )
        state = loop.run(state, logging.quiet or not primary)
    finally:
        if checkpointer is not None:
            checkpointer.close()
    return state, loop.history


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
        start = step_number(state)
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
        bad = _diverged(metrics)
        if bad is not None:
            raise TrainingDiverged(step, metrics, self.last_good, before, bad or None)
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
    """A tqdm bar of the run's steps with the loss and one rate, that of the steps after the first.

    The first step of a `fit` call includes compiling the step (seconds, where a
    step takes milliseconds), so a rate that counts it misleads for a long while.
    The bar says so while that step runs, then shows one rate, steps per second
    since the first step ended, and the time left at that rate; tqdm's own rate,
    which counts the compilation, is not shown. At the end the postfix keeps the
    final loss, the rate and how long the first step took.
    """

    _FORMAT = "{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]"

    def __init__(self, start: int, total: int, quiet: bool):
        self.quiet, self.start, self.total = quiet, start, total
        self.bar = tqdm(
            total=total,
            initial=start,
            unit="step",
            disable=quiet,
            dynamic_ncols=True,
            bar_format=self._FORMAT,
            postfix="first step (compiling it)" if start < total else None,
        )
        self.began = time.perf_counter()
        self.first: Optional[float] = None  # when the first step of this call ended
        self.shown = self.began
        self.loss = ""

    def update(self, done: int, loss: float) -> None:
        self.bar.update(1)
        if self.quiet:
            return
        now = time.perf_counter()
        self.loss = f"{np.mean(loss):.4g}" + (" (mean)" if np.ndim(loss) else "")
        if self.first is None:
            self.first = now
        # Refresh twice a second, and on the first and last step.
        if now - self.shown > 0.5 or done in (self.start + 1, self.total):
            self.bar.set_postfix_str(self._postfix(done, now), refresh=False)
            self.bar.refresh()
            self.shown = now

    def _postfix(self, done: int, now: float) -> str:
        assert self.first is not None
        first = f"first step {self.first - self.began:.1f} s with compilation"
        after = done - self.start - 1  # steps timed after the first one
        if after < 1 or now <= self.first:
            return f"loss={self.loss}, {first}"
        rate = after / (now - self.first)
        if done < self.total:
            left = tqdm.format_interval((self.total - done) / rate)
            return f"loss={self.loss}, {rate:.1f} steps/s, {left} left ({first})"
        return f"loss={self.loss}, {rate:.1f} steps/s after the first ({first})"

    def close(self) -> None:
        self.bar.close()

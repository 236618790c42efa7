"""`fit`: the Python loop around a jitted step, with logs, checkpoints and resume.

Everything that talks to the outside world (progress bar, JSON lines,
checkpoints, the divergence check) lives here, outside `jit`. The data
source is a function of the step number, so a resumed run asks for exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from tqdm import tqdm

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
    """

    train: list
    eval: list


def to_python(tree: Any) -> Any:
    """Device arrays -> Python floats/ints/bools (nested dicts kept), for JSON."""

    def one(x):
        x = np.asarray(x)
        if x.dtype != np.bool_ and not np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float64)  # bfloat16 & co. give Python floats this way
        return x.tolist()  # a Python scalar, or lists of one per ensemble member

    return jax.tree_util.tree_map(one, jax.device_get(tree))


class JsonLinesLog:
    """Append-only JSON-lines file; one object per line, flushed every write."""

    def __init__(self, path: Optional[str | os.PathLike], resume_from: Optional[int]):
        self.path = None if path is None else Path(path)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is None:
            self.path.write_text("")
        else:
            self._truncate_after(resume_from)

    def _truncate_after(self, step: int) -> None:
        """Drop records past the resumed step: they are about to be redone."""
        if not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")


def _is_finite(metrics: dict) -> bool:
    """Scalars, or lists of one value per ensemble member: every one must be finite."""
    finite = np.all(metrics.get("finite", True))
    return bool(
        finite
        and np.all(np.isfinite(metrics["loss"]))
        and np.all(np.isfinite(metrics["grad_norm"]))
    )


def _resume(checkpointer, state: TrainState, resume: bool) -> tuple[TrainState, Optional[int]]:
    if checkpointer is None or checkpointer.latest_step() is None:
        return state, None
    if not resume:
        # Mixing two runs in one directory would let "keep the last k" delete the new one.
        raise ValueError(
            f"{checkpointer.directory} already holds checkpoints {checkpointer.steps()}; "
            "pass resume=True to continue that run, or use an empty directory."
        )
    restored = checkpointer.restore(state)
    if restored.data_position != int(restored.state.step):
        raise ValueError(
            f"checkpoint {restored.step} records data position {restored.data_position!r}, "
            f"but fit expects it to equal the step {int(restored.state.step)}."
        )
    return restored.state, restored.step


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
      resume: restore the latest checkpoint in `checkpoint_dir` if any; with
        False, a `checkpoint_dir` that already holds checkpoints is an error.
      quiet: no progress bar (tests, batch jobs).
      on_checkpoint: called as `on_checkpoint(step, path)` after each save.

    Returns:
      `(state, history)`: the final state and this call's metrics.

    Raises:
      TrainingDiverged: a step gave a non-finite loss, gradient or parameters.
        The message names the step and the last good checkpoint; no
        non-finite state is ever saved.
    """
    from lstmjax.checkpoint import Checkpointer  # orbax is imported only when needed

    for name, value in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        if value is not None:
            _check_count(name, value)
    _check_count("log_every", log_every)
    _check_count("num_steps", num_steps, minimum=0)
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("checkpoint_every needs a checkpoint_dir.")
    checkpointer = None if checkpoint_dir is None else Checkpointer(checkpoint_dir, keep=keep)
    try:
        state, resumed = _resume(checkpointer, state, resume)
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
                 checkpointer, checkpoint_every, on_checkpoint):  # fmt: skip
        self.step_fn, self.batch_fn, self.num_steps = step_fn, batch_fn, num_steps
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.log, self.log_every = log, log_every
        self.checkpointer, self.checkpoint_every = checkpointer, checkpoint_every
        self.on_checkpoint = on_checkpoint
        self.history = History(train=[], eval=[])
        self.last_good: Optional[Path] = None
        if checkpointer is not None and checkpointer.latest_step() is not None:
            self.last_good = checkpointer.path(checkpointer.latest_step())

    def run(self, state: TrainState, quiet: bool) -> TrainState:
        start = int(state.step)
        bar = _Progress(start, self.num_steps, quiet)
        try:
            for step in range(start, self.num_steps):
                new_state, metrics = self.step_fn(state, self.batch_fn(step))
                metrics = to_python(metrics)  # waits for the step: needed to check it
                if not _is_finite(metrics):
                    raise TrainingDiverged(step, metrics, self.last_good, state)
                state = new_state
                self._after_step(state, step + 1, metrics)
                bar.update(step + 1, metrics["loss"])
        finally:
            bar.close()
        return state

    def _after_step(self, state: TrainState, done: int, metrics: dict) -> None:
        if done % self.log_every == 0 or done == self.num_steps:
            self._record("train", done, metrics, self.history.train)
        if self.eval_fn is not None and _due(done, self.eval_every, self.num_steps):
            evaluation = to_python(self.eval_fn(state.params))
            self._record("eval", done, evaluation, self.history.eval)
        if self.checkpointer is not None and _due(done, self.checkpoint_every, self.num_steps):
            self.last_good = self.checkpointer.save(state, data_position=done)
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

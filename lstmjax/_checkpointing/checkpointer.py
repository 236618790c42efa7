"""`Checkpointer`: save and restore `TrainState`s, atomically, with checksums.

The public face and the whole story (atomic commit, checksums, newest
intact step, optimizer identity, one writer) are in `lstmjax.checkpoint`.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from lstmjax._checkpointing import storage
from lstmjax._checkpointing.directory import make_directory
from lstmjax._checkpointing.errors import (
    CheckpointCorruptError,
    CheckpointWarning,
    NonFiniteStateError,
)
from lstmjax._checkpointing.fingerprint import OptimizerIdentity, check_optimizer
from lstmjax._checkpointing.integrity import (
    MANIFEST,
    check_fits,
    content_record,
    describe_structure,
    file_manifest,
    first_mismatched_digest,
    leaf_name,
    manifest_problem,
    non_finite_leaves,
)
from lstmjax._checkpointing.lock import DirectoryLock
from lstmjax._checkpointing.storage import (
    FORMAT,
    LEFTOVER,
    STEP_NAME,
    DamagedError,
    Restored,
    is_key,
    looks_like_ours,
    orbax_checkpointer,
    read,
    short,
    storable,
)
from lstmjax._checks import check_bool, check_optional_size, check_size
from lstmjax._training.processes import is_primary
from lstmjax._training.state import TrainState, step_number


class Checkpointer:
    """Save and restore `TrainState`s in one directory, keeping the last `keep`.

    Use as a context manager, or call `close()` when done.

    Args:
      directory: where the checkpoints live (created if missing).
      keep: how many of the most recent checkpoints to keep (>= 1).
      writer: take the directory's writer lock (the default); a second
        writer, in this process or another, gets `CheckpointLockedError`.
        `writer=False` opens it for reading only: `save` is refused.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, *, writer: bool = True):
        keep = check_size("Checkpointer: keep", keep)
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(
                f"Checkpointer: directory must be a path (str or os.PathLike); got "
                f"{directory!r} ({type(directory).__name__})."
            )
        writer = check_bool("Checkpointer: writer", writer)
        self.directory = Path(directory).absolute()
        self.keep, self.writer = keep, writer
        self._lock: Optional[DirectoryLock] = None
        if writer:
            make_directory(self.directory)
            if is_primary():
                self._lock = DirectoryLock(self.directory)
                self._lock.acquire()
                self._remove_leftovers()
        self._orbax = orbax_checkpointer()

    # -- listing -------------------------------------------------------------

    def steps(self) -> list[int]:
        """The committed step directories, oldest first (not yet verified intact)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            int(p.name) for p in self.directory.iterdir() if STEP_NAME.match(p.name) and p.is_dir()
        )

    def latest_step(self) -> Optional[int]:
        """The newest committed step, or None when there is none."""
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step: int) -> Path:
        """The directory of checkpoint `step` (an int >= 0)."""
        return self.directory / str(check_size("Checkpointer.path: step", step, minimum=0))

    # -- saving --------------------------------------------------------------

    def save(
        self,
        state: TrainState,
        *,
        data_position: Any = None,
        optimizer: Optional[OptimizerIdentity] = None,
    ) -> Path:
        """Write `state` as checkpoint `int(state.step)`; returns its directory.

        Args:
          state: the training state; its params and optimizer state must be
            finite (a `NonFiniteStateError` names the leaves that are not).
          data_position: a JSON-serializable record of where the data source
            stands; defaults to `int(state.step)`, the next batch index.
          optimizer: the optimizer's identity, from
            `optimizer_identity(state.opt_state, optimizer, fingerprint, params)`;
            by default only its state's structure is recorded.
        """
        if not self.writer:
            raise PermissionError(f"this Checkpointer of {self.directory} is read-only.")
        bad = non_finite_leaves({"params": state.params, "opt_state": state.opt_state})
        if bad:
            raise NonFiniteStateError(
                f"refusing to save step {step_number(state)}: non-finite values in {bad[:5]}"
                f"{' ...' if len(bad) > 5 else ''}."
            )
        step = step_number(state)
        stored = storable(state)
        identity = optimizer or OptimizerIdentity(describe_structure(state.opt_state))
        meta = {
            "format": FORMAT,
            "step": step,
            "data_position": step if data_position is None else data_position,
            "content": content_record(stored),
            "optimizer": identity._asdict(),
        }
        json.dumps(meta)  # a data_position that is not JSON fails here, before any write
        staging = self.directory / f".{step}.saving"
        if is_primary() and staging.exists():
            shutil.rmtree(staging)
        try:
            storage.write(
                self._orbax,
                staging,
                ocp.args.Composite(
                    state=ocp.args.StandardSave(stored), meta=ocp.args.JsonSave(meta)
                ),
            )
            if is_primary():
                # Every file's size and SHA-256, written last: a step is only committed whole.
                manifest = json.dumps(file_manifest(staging))
                (staging / MANIFEST).write_text(manifest)
        except Exception as error:
            failure = storage.write_failure(error)  # a full disk, a quota, a size limit, ...
            if failure is None:
                raise
            if is_primary():
                for partial in self.directory.glob(f".{step}.saving*"):
                    shutil.rmtree(partial, ignore_errors=True)
            raise self._write_failed(step, *failure) from error
        if is_primary():
            storage.commit(staging, self.path(step))
            self._drop_old()
        storage.sync(f"lstmjax_checkpoint_{step}")
        return self.path(step)

    def _write_failed(self, step: int, errno: Optional[int], what: str) -> OSError:
        """The error of a save that could not write its files, saying what is left."""
        earlier = [s for s in self.steps() if s != step]
        if earlier:
            kept = (
                f"the earlier checkpoints {earlier} in {self.directory} are intact; rerun "
                f"fit with the same directory once there is room, and it resumes from step "
                f"{earlier[-1]}"
            )
        else:
            kept = f"{self.directory} holds no earlier checkpoint"
        return OSError(
            errno,
            f"could not save checkpoint step {step} in {self.directory}: {what} (the "
            f"disk, a quota or a file-size limit is full, or the file system failed). Nothing "
            f"of step {step} was committed and its partial files were removed; {kept}.",
        )

    def _drop_old(self) -> None:
        """Keep the newest `keep` checkpoints; never delete a directory that is not one."""
        ours = [s for s in self.steps() if looks_like_ours(self.path(s))]
        for step in ours[: -self.keep]:
            shutil.rmtree(self.path(step))

    def _remove_leftovers(self) -> None:
        for p in self.directory.iterdir():
            if LEFTOVER.match(p.name):
                shutil.rmtree(p, ignore_errors=True)

    def stray_steps(self) -> list[int]:
        """Step-named directories that hold none of a checkpoint's files (e.g. empty)."""
        return [s for s in self.steps() if not looks_like_ours(self.path(s))]

    def set_aside(self, step: int) -> Path:
        """Rename step `step` to `<step>.damaged` (or `.not-a-checkpoint`); returns the new path.

        `fit` does this to the damaged steps newer than the one it resumed
        from, so that its own saves cannot collide with them. Nothing is deleted.
        """
        if not self.writer:
            raise PermissionError(f"this Checkpointer of {self.directory} is read-only.")
        source = self.path(step)
        suffix = "not-a-checkpoint" if not looks_like_ours(source) else "damaged"
        target, n = self.directory / f"{step}.{suffix}", 1
        while target.exists():
            target, n = self.directory / f"{step}.{suffix}.{n}", n + 1
        if is_primary():
            source.rename(target)
        return target

    # -- restoring -----------------------------------------------------------

    def restore(
        self,
        like: TrainState,
        step: Optional[int] = None,
        *,
        optimizer: Optional[OptimizerIdentity] = None,
    ) -> Restored:
        """Load checkpoint `step` (default: the newest intact one) into the shape of `like`.

        Args:
          like: a `TrainState` of the model and optimizer to restore into (for
            example `init_state(...)` of a fresh run); only its structure,
            shapes, dtypes and shardings are used.
          step: which checkpoint; None for the newest intact one (each newer
            damaged step is skipped with a `CheckpointWarning`).
          optimizer: the identity of the optimizer that will continue the run;
            by default only its state's structure (from `like`) is compared.

        Raises:
          FileNotFoundError: no such checkpoint, or none at all.
          CheckpointCorruptError: the step asked for is damaged, or (step=None)
            no step is intact; the message names each step and what is wrong.
          CheckpointMismatchError: the structure, a shape or a dtype differs;
            the message names the leaf and both shapes.
          OptimizerMismatchError: another optimizer or other hyperparameters.
        """
        step = check_optional_size("Checkpointer.restore: step", step, minimum=0)
        steps = self.steps()
        if step is not None and step not in steps:
            raise FileNotFoundError(f"no checkpoint {step} in {self.directory}; have {steps}.")
        if not steps:
            what = " (it is a file, not a directory)" if self.directory.is_file() else ""
            raise FileNotFoundError(f"no checkpoint in {self.directory}{what}.")
        identity = optimizer or OptimizerIdentity(describe_structure(like.opt_state))
        candidates = [step] if step is not None else steps[::-1]
        skipped = []
        for candidate in candidates:
            try:
                return self._restore_step(like, candidate, identity)._replace(
                    skipped=tuple(skipped)
                )
            except DamagedError as damage:
                if step is not None:
                    raise CheckpointCorruptError(
                        f"checkpoint {self.path(candidate)} is damaged: {damage.reason}."
                    ) from None
                skipped.append((candidate, damage.reason))
                what = "is not an lstmjax checkpoint" if damage.stray else "is damaged"
                warnings.warn(
                    f"skipping {self.path(candidate)} (step {candidate}): it {what}: "
                    f"{damage.reason}.",
                    CheckpointWarning,
                    stacklevel=2,
                )
        listing = "; ".join(f"step {s}: {why}" for s, why in skipped)
        raise CheckpointCorruptError(
            f"no intact checkpoint in {self.directory}: {listing}. Delete the directory "
            "to start afresh, or restore a copy."
        )

    def _restore_step(self, like: TrainState, step: int, identity: OptimizerIdentity) -> Restored:
        path = self.path(step)
        where = f"checkpoint {path}"
        if not looks_like_ours(path):
            contents = sorted(p.name for p in path.iterdir())[:5]
            raise DamagedError(
                f"it holds {contents or 'nothing'}, none of a checkpoint's files", True
            )
        self._check_files(path)
        meta = self._read_meta(path)
        target = storable(like)
        content = meta["content"]
        stored = {name: (leaf["shape"], leaf["dtype"]) for name, leaf in content.items()}
        wanted = {
            leaf_name(p): (jnp.shape(x), jnp.result_type(x))
            for p, x in jax.tree_util.tree_flatten_with_path(target)[0]
        }
        check_fits(stored, wanted, step, directory=self.directory)
        compared = check_optimizer(meta["optimizer"], identity, where, self.directory)
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        out, failure = read(
            self._orbax, path, ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
        if failure is not None:
            raise DamagedError(f"its array data cannot be read ({failure})")
        state = TrainState(*out["state"])
        mismatch = first_mismatched_digest(state, content)
        if mismatch is not None:
            name, count = mismatch
            more = f" (and {count - 1} more leaves)" if count > 1 else ""
            raise DamagedError(
                f"leaf '{name}'{more} does not match the checksum written with it: the data "
                "changed after it was saved"
            )
        if is_key(like.rng):
            assert state.rng is not None  # restored into the shape of `like`, which has a key
            state = state._replace(
                rng=jax.random.wrap_key_data(state.rng, impl=jax.random.key_impl(like.rng))
            )
        return Restored(state, step, meta["data_position"], (), tuple(compared))

    def _check_files(self, path: Path) -> None:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise DamagedError(f"its file list {MANIFEST} is missing") from None
        except (OSError, ValueError) as error:
            raise DamagedError(
                f"its file list {MANIFEST} cannot be read ({short(error)})"
            ) from None
        if not isinstance(manifest, dict):
            raise DamagedError(f"its file list {MANIFEST} is not a JSON object")
        try:
            problem = manifest_problem(path, manifest)
        except (TypeError, ValueError):
            problem = f"its file list {MANIFEST} is malformed"
        if problem is not None:
            raise DamagedError(problem)

    def _read_meta(self, path: Path) -> dict:
        out, failure = read(self._orbax, path, ocp.args.Composite(meta=ocp.args.JsonRestore()))
        if failure is not None:  # a torn or missing JSON record
            raise DamagedError(f"its record meta/ cannot be read ({failure})")
        meta = out["meta"]
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise DamagedError(f"its record has format {found!r}, not {FORMAT!r}")
        missing = [k for k in ("step", "data_position", "content", "optimizer") if k not in meta]
        if missing:
            raise DamagedError(f"its record lacks {missing}")
        return meta

    def close(self) -> None:
        """Release the writer lock and orbax's resources (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._orbax.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def latest_step(directory: str | os.PathLike) -> Optional[int]:
    """The newest committed checkpoint step in `directory`, or None (not verified intact)."""
    with Checkpointer(directory, writer=False) as ckpt:
        return ckpt.latest_step()

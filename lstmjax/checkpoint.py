"""Checkpoints of the whole training state, kept with orbax-checkpoint.

A checkpoint holds a `TrainState` (params, optimizer state, step, PRNG key)
and a small JSON record with the data position, in `<directory>/<step>/`.

Why orbax-checkpoint rather than `flax.serialization` msgpack: orbax is the
JAX ecosystem's maintained checkpoint library, it stores every array's raw
bytes (so a restore is bit-exact), it saves and restores sharded arrays
(`lstmjax.parallel`), and it already commits atomically: a step is written
into a temporary directory and renamed to `<step>` only when complete, and
the manager lists committed steps only. A process killed mid-save therefore
leaves the previous checkpoints readable (`tests/test_checkpoint.py` kills
one at the commit point). A save costs about 50 ms on CPU for a small
model. Asynchronous saving is turned off: `save` returns once the step is
committed, which keeps the kill-and-resume reasoning simple.

What this module adds on top: it refuses to save non-finite parameters or
optimizer state, and it checks the structure, shapes and dtypes stored
against the state being restored into, naming the first leaf that differs
(orbax alone names only the shapes), so a model of another size never loads
silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lstmjax._training.step import TrainState

_FORMAT = "lstmjax.TrainState/1"


class NonFiniteStateError(ValueError):
    """Raised instead of saving a state that holds NaN or infinite values."""


class CheckpointMismatchError(ValueError):
    """Raised when a checkpoint does not fit the state it is restored into."""


class Restored(NamedTuple):
    """What `Checkpointer.restore` returns.

    Attributes:
      state: the restored `TrainState`, placed like the `like` state.
      step: the checkpoint's step.
      data_position: where the data source stands (the next batch index for
        `fit`, which equals `int(state.step)`), or whatever the caller saved.
    """

    state: TrainState
    step: int
    data_position: Any


def leaf_name(path: tuple) -> str:
    """A dotted name for a pytree key path: `params.0.forward.w_x`."""
    parts = []
    for key in path:
        for attr in ("name", "key", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


class _StateWithoutCarry(NamedTuple):
    """A `TrainState` as stored before it had a carry field (same names, same order)."""

    params: Any
    opt_state: Any
    step: Any
    rng: Any


def _storable(state: TrainState) -> Any:
    """Typed PRNG keys are stored as their raw uint32 data.

    A state without a stream carry (`carry=None`) is stored with the four
    fields it had before the carry existed, so older checkpoints restore.
    """
    rng = jax.random.key_data(state.rng) if _is_key(state.rng) else state.rng
    state = state._replace(rng=rng)
    return _StateWithoutCarry(*state[:4]) if state.carry is None else state


def _non_finite_leaves(tree: Any) -> list[str]:
    bad = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            if not bool(jnp.all(jnp.isfinite(leaf))):
                bad.append(leaf_name(path))
    return bad


def check_fits(stored: dict[str, Any], wanted: dict[str, Any], step: int) -> None:
    """Compare `{leaf name: (shape, dtype)}` maps; raise naming the first difference.

    `wanted` is in the restoring state's flatten order, so a shape error names
    a parameter before the optimizer moments that mirror it.
    """
    missing = sorted(set(wanted) - set(stored))
    extra = sorted(set(stored) - set(wanted))
    if missing or extra:
        raise CheckpointMismatchError(
            f"checkpoint {step} has a different structure from the state to restore into: "
            f"missing from the checkpoint {missing[:5]}, only in the checkpoint {extra[:5]}. "
            "Was it written by another model or optimizer?"
        )
    differ = [name for name in wanted if tuple(stored[name][0]) != tuple(wanted[name][0])]
    if differ:
        name = differ[0]  # in the state's own order: parameters come first
        more = f" ({len(differ) - 1} more leaves differ in shape)" if len(differ) > 1 else ""
        raise CheckpointMismatchError(
            f"checkpoint {step}: leaf '{name}' has shape {tuple(stored[name][0])} in the "
            f"checkpoint but shape {tuple(wanted[name][0])} in the state to restore into{more}."
        )
    for name in wanted:
        s_dtype, w_dtype = np.dtype(stored[name][1]), np.dtype(wanted[name][1])
        if s_dtype != w_dtype:
            raise CheckpointMismatchError(
                f"checkpoint {step}: leaf '{name}' has dtype {s_dtype} in the checkpoint "
                f"but dtype {w_dtype} in the state to restore into."
            )


def _registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    # Registered up front so that a fresh process can read metadata before any save.
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for item, handler, args in (
        ("state", ocp.StandardCheckpointHandler, (ocp.args.StandardSave, ocp.args.StandardRestore)),
        ("meta", ocp.JsonCheckpointHandler, (ocp.args.JsonSave, ocp.args.JsonRestore)),
    ):
        for arg in args:
            registry.add(item, arg, handler)
    return registry


class Checkpointer:
    """Save and restore `TrainState`s in one directory, keeping the last `keep`.

    Use as a context manager, or call `close()` when done.

    Args:
      directory: where the checkpoints live (created if missing).
      keep: how many of the most recent checkpoints to keep (>= 1).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a positive int; got {keep!r}.")
        self.directory = Path(directory).absolute()
        self.keep = keep
        self._manager = ocp.CheckpointManager(
            self.directory,
            handler_registry=_registry(),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=False, create=True
            ),
        )

    def steps(self) -> list[int]:
        """The committed checkpoint steps, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> Optional[int]:
        """The newest committed step, or None when there is none."""
        return self._manager.latest_step()

    def path(self, step: int) -> Path:
        """The directory of checkpoint `step`."""
        return self.directory / str(step)

    def save(self, state: TrainState, *, data_position: Any = None) -> Path:
        """Write `state` as checkpoint `int(state.step)`; returns its directory.

        Args:
          state: the training state; its params and optimizer state must be
            finite (a `NonFiniteStateError` names the leaves that are not).
          data_position: a JSON-serializable record of where the data source
            stands; defaults to `int(state.step)`, the next batch index.
        """
        bad = _non_finite_leaves({"params": state.params, "opt_state": state.opt_state})
        if bad:
            raise NonFiniteStateError(
                f"refusing to save step {int(state.step)}: non-finite values in {bad[:5]}"
                f"{' ...' if len(bad) > 5 else ''}."
            )
        step = int(state.step)
        position = step if data_position is None else data_position
        meta = {"format": _FORMAT, "step": step, "data_position": position}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_storable(state)), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._manager.wait_until_finished()
        return self.path(step)

    def restore(self, like: TrainState, step: Optional[int] = None) -> Restored:
        """Load checkpoint `step` (default: the latest) into the shape of `like`.

        Args:
          like: a `TrainState` of the model and optimizer to restore into (for
            example `init_state(...)` of a fresh run); only its structure,
            shapes, dtypes and shardings are used.
          step: which checkpoint; None for the latest.

        Raises:
          FileNotFoundError: no such checkpoint.
          CheckpointMismatchError: the structure, a shape or a dtype differs;
            the message names the leaf and both shapes.
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint in {self.directory}.")
        elif step not in self.steps():
            raise FileNotFoundError(
                f"no checkpoint {step} in {self.directory}; have {self.steps()}."
            )
        target = _storable(like)
        stored_tree = self._manager.item_metadata(step)["state"]
        stored = {
            leaf_name(p): (m.shape, m.dtype)
            for p, m in jax.tree_util.tree_flatten_with_path(stored_tree)[0]
        }
        wanted = {
            leaf_name(p): (jnp.shape(x), jnp.result_type(x))
            for p, x in jax.tree_util.tree_flatten_with_path(target)[0]
        }
        check_fits(stored, wanted, step)
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        state = TrainState(*out["state"])
        if _is_key(like.rng):
            state = state._replace(
                rng=jax.random.wrap_key_data(state.rng, impl=jax.random.key_impl(like.rng))
            )
        return Restored(state=state, step=step, data_position=out["meta"]["data_position"])

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def latest_step(directory: str | os.PathLike) -> Optional[int]:
    """The newest committed checkpoint step in `directory`, or None."""
    if not Path(directory).exists():
        return None
    with Checkpointer(directory) as ckpt:
        return ckpt.latest_step()

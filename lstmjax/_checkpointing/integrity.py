"""What a checkpoint records about its own content, so a restore can tell it is intact.

Each step's record holds, per array leaf of the stored state, its shape,
dtype and a SHA-256 digest of its bytes. A restore recomputes the digests
from the arrays orbax read back and compares: one flipped bit anywhere in
the array data changes a digest (orbax's compressed chunks decode a flipped
bit into wrong values without complaint, which is why this exists).

It also describes a pytree's structure by node types and field names
(`ScaleByAdamState(count, mu=..., nu=...)`), which tells optimizers apart
whose states have the same leaves, such as `adam` and `adamw`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._checkpointing.errors import CheckpointMismatchError, mismatch_advice


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


def host_bytes(leaf: Any) -> Optional[np.ndarray]:
    """The leaf's values on this host; for a replicated array spread over processes, one copy."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        if not leaf.is_fully_replicated:
            return None  # sharded over processes: no process holds all of it
        leaf = leaf.addressable_data(0)
    return np.ascontiguousarray(np.asarray(leaf))


def digest(values: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    h = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    h.update(values.tobytes())
    return h.hexdigest()


def content_record(tree: Any) -> dict[str, dict]:
    """`{leaf name: {"shape", "dtype", "sha256"}}` in the tree's flatten order.

    "sha256" is None for an array sharded over processes (not checkable here).
    """
    record = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        values = host_bytes(leaf)
        record[leaf_name(path)] = {
            "shape": list(np.shape(leaf)),
            "dtype": np.dtype(leaf.dtype).name,
            "sha256": None if values is None else digest(values),
        }
    return record


def first_mismatched_digest(tree: Any, record: dict[str, dict]) -> tuple[str, int] | None:
    """The first leaf whose bytes differ from `record`, and how many do; None if all match."""
    bad = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name, values = leaf_name(path), host_bytes(leaf)
        expected = record.get(name, {}).get("sha256")
        if values is not None and expected is not None and digest(values) != expected:
            bad.append(name)
    return (bad[0], len(bad)) if bad else None


def describe_structure(tree: Any) -> str:
    """A pytree's structure by node type and field name, leaves as `*`.

    Stable across JAX versions (unlike `str(treedef)`), and it keeps the
    class names that tell `ScaleByAdamState` from `ScaleByBeliefState`.
    """
    if tree is None:
        return "None"
    if hasattr(tree, "_fields"):  # NamedTuple: optax states, lstmjax params
        inner = ", ".join(
            f"{f}={describe_structure(v)}" for f, v in zip(tree._fields, tree, strict=True)
        )
        return f"{type(tree).__name__}({inner})"
    if isinstance(tree, dict):
        inner = ", ".join(f"{k!r}: {describe_structure(tree[k])}" for k in sorted(tree, key=str))
        return "{" + inner + "}"
    if isinstance(tree, (tuple, list)):
        inner = ", ".join(describe_structure(v) for v in tree)
        return f"({inner})" if isinstance(tree, tuple) else f"[{inner}]"
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(tree)):
        return "*"
    # Another registered node (a flax struct, an equinox module): its children, one level down.
    children = jax.tree_util.tree_flatten(tree, is_leaf=lambda x: x is not tree)[0]
    return f"{type(tree).__name__}({', '.join(describe_structure(c) for c in children)})"


def non_finite_leaves(tree: Any) -> list[str]:
    """Names of the floating-point leaves that hold a NaN or an infinity."""
    bad = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            if not bool(jnp.all(jnp.isfinite(leaf))):
                bad.append(leaf_name(path))
    return bad


def check_fits(
    stored: dict[str, Any], wanted: dict[str, Any], step: int, *, directory=None
) -> None:
    """Compare `{leaf name: (shape, dtype)}` maps; raise naming the first difference.

    `wanted` is in the restoring state's flatten order, so a shape error names
    a parameter before the optimizer moments that mirror it. Every message
    ends with what to do (`errors.mismatch_advice`): a new checkpoint
    directory, or the settings the stored run was written with.

    Args:
      stored: the checkpoint's leaves, `{name: (shape, dtype)}`.
      wanted: the leaves of the state to restore into, in its flatten order.
      step: the checkpoint's step, named in the message.
      directory: the checkpoint directory, named in the message and the
        advice; None where it is not known.
    """
    where = f"checkpoint {step}" if directory is None else f"checkpoint {directory}/{step}"
    missing = sorted(set(wanted) - set(stored))
    extra = sorted(set(stored) - set(wanted))
    if missing or extra:
        advice = mismatch_advice(
            directory, "build the state with the model and the optimizer it was written with"
        )
        raise CheckpointMismatchError(
            f"{where} has a different structure from the state to restore into: "
            f"missing from the checkpoint {missing[:5]}, only in the checkpoint {extra[:5]}; "
            f"it was written by another model or optimizer.{advice}"
        )
    differ = [name for name in wanted if tuple(stored[name][0]) != tuple(wanted[name][0])]
    if differ:
        name = differ[0]  # in the state's own order: parameters come first
        more = f" ({len(differ) - 1} more leaves differ in shape)" if len(differ) > 1 else ""
        advice = mismatch_advice(
            directory,
            f"build the state with the model it was written with ('{name}' of shape "
            f"{tuple(stored[name][0])})",
        )
        raise CheckpointMismatchError(
            f"{where}: leaf '{name}' has shape {tuple(stored[name][0])} in the "
            f"checkpoint but shape {tuple(wanted[name][0])} in the state to restore into"
            f"{more}.{advice}"
        )
    for name in wanted:
        s_dtype, w_dtype = np.dtype(stored[name][1]), np.dtype(wanted[name][1])
        if s_dtype != w_dtype:
            advice = mismatch_advice(
                directory,
                f"build the state in the dtypes it was written with ('{name}' in {s_dtype}; "
                "a cell's dtype= sets its parameters' dtype)",
            )
            raise CheckpointMismatchError(
                f"{where}: leaf '{name}' has dtype {s_dtype} in the checkpoint "
                f"but dtype {w_dtype} in the state to restore into.{advice}"
            )


MANIFEST = "lstmjax_manifest.json"


def _file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_manifest(directory) -> dict[str, list]:
    """`{relative path: [size, sha256]}` of every file under a written step directory."""
    return {
        str(p.relative_to(directory)): [p.stat().st_size, _file_digest(p)]
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def manifest_problem(directory, manifest: dict[str, list]) -> str | None:
    """What differs between the files under `directory` and `manifest`, or None.

    Checked before orbax reads anything, so that a truncated, emptied,
    deleted or altered file is named as such and never reaches orbax (whose
    failed reads leave asynchronous work behind).
    """
    for name, (size, sha) in manifest.items():
        path = directory / name
        if not path.is_file():
            return f"its file {name} is missing"
        actual = path.stat().st_size
        if actual != size:
            what = "empty" if actual == 0 else f"{actual} bytes"
            return f"its file {name} is {what}, {size} bytes when saved (truncated or overwritten)"
        if _file_digest(path) != sha:
            return f"its file {name} does not match the checksum written with it"
    return None

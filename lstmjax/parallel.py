"""Data-parallel training over every visible device with `jax.sharding`.

A one-axis `Mesh` named "batch" spans the devices. Batches are split along
their leading (batch) axis, one slice per device; the training state is
replicated. The step is the ordinary one from `lstmjax.train`, compiled
with these shardings: XLA partitions the computation and inserts the
all-reduce of the gradient itself, so there is no hand-written collective
and no multiprocessing. On one device the mesh has one entry and the same
code runs unchanged.

    mesh = parallel.make_mesh()
    step = parallel.make_sharded_train_step(apply_fn, loss_fn, optimizer, mesh)
    state = parallel.replicate(train.init_state(params, optimizer, key), mesh)
    state, metrics = step(state, parallel.shard_batch((xs, ys), mesh))

`fit` works with the sharded step too: pass `lambda s: shard_batch(batch_fn(s), mesh)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lstmjax._training.step import ApplyFn, Batch, LossFn, TrainState, train_step_fn

BATCH_AXIS = "batch"


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A one-axis mesh named "batch" over `devices` (default: all of them)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device.")
    return Mesh(np.array(devices), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading axis across the mesh; other axes stay whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of `tree` (e.g. a `TrainState`) on all devices of `mesh`."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: Batch, mesh: Mesh) -> Batch:
    """Place a batch (any pytree of `[B, ...]` arrays) split along B across `mesh`.

    Raises:
      ValueError: an array has no batch axis, or B is not a multiple of the
        number of devices (each device must get an equal slice).
    """
    n = mesh.size
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
        shape = np.shape(leaf)
        where = jax.tree_util.keystr(path) or "the batch"
        if len(shape) == 0:
            raise ValueError(f"shard_batch: {where} is a scalar; every leaf needs a batch axis.")
        if shape[0] % n:
            raise ValueError(
                f"shard_batch: {where} has batch size {shape[0]} (shape {shape}), which "
                f"{n} devices cannot split evenly; use a multiple of {n}."
            )
    return jax.device_put(batch, batch_sharding(mesh))


def make_sharded_train_step(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    clip_norm: Optional[float] = None,
    *,
    with_key: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """`lstmjax.train.make_train_step`, compiled for data parallelism over `mesh`.

    The state comes in and goes out replicated, the batch comes in split
    along its leading axis (place it with `shard_batch`), and the metrics are
    replicated. Arguments and metrics are those of `make_train_step`.
    """
    step = train_step_fn(apply_fn, loss_fn, optimizer, clip_norm, with_key=with_key)
    return jax.jit(
        step,
        in_shardings=(replicated(mesh), batch_sharding(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
    )

"""Devices and processes: data-parallel training over every device of the job.

A one-axis `Mesh` named "batch" spans the devices. Batches are split along
their leading (batch) axis, one slice per device; the training state is
replicated. The step is the ordinary one from `lstmjax.train`, compiled by `shard`
with these shardings: XLA partitions the computation and inserts the
all-reduce of the gradient itself, so there is no hand-written collective
and no multiprocessing. On one device the mesh has one entry and the same
code runs unchanged.

Several processes (one per host, or several on one machine) run the same
script: each calls `initialize` first, the mesh then spans the devices of
every process, each process builds only its own rows of the global batch
(`keyed_shards`) and places them with `shard_local_batch`
(`jax.make_array_from_process_local_data`), and the one jitted step runs as
a single program over all of them. Only process 0 prints and writes logs in
`train.fit`; orbax writes each checkpoint once for the whole job.

    mesh = distributed.make_mesh()
    step = distributed.shard(train.make_train_step(apply_fn, loss_fn, optimizer), mesh)
    state = distributed.place_state(train.init_state(params, optimizer), mesh)
    state, metrics = step(state, distributed.shard_batch((xs, ys), mesh))

`fit` works with the sharded step too: pass `lambda s: shard_batch(batch_fn(s), mesh)`,
or with several processes `lambda s: shard_local_batch(local_batches(s), mesh)`.
A stream shards the same way: `distributed.shard(tbptt.stream(step, c0), mesh,
carry_batch_axis=1)` with `place_state(state, mesh, carry_batch_axis=1)`.

("Parallel in time", the parallel solvers of `lj.unroll`, is another
concept; this module is about devices and processes.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lstmjax._checks import check_size
from lstmjax._training.processes import host_array, local_row_range
from lstmjax._training.processes import initialize as initialize
from lstmjax._training.processes import is_primary as is_primary
from lstmjax._training.processes import keyed_shards as keyed_shards
from lstmjax._training.processes import shard_range as shard_range
from lstmjax._training.state import TrainState
from lstmjax._training.step import StepFn
from lstmjax._typing import Batch

BATCH_AXIS = "batch"


def make_mesh(
    # jax.Device is Unknown to pyright: jaxlib's native module, where it is defined, has no stub.
    devices: Optional[Sequence[jax.Device]] = None,  # pyright: ignore[reportInvalidTypeForm]
) -> Mesh:
    """A one-axis mesh named "batch" over `devices` (default: all of them, of every process)."""
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
    """Place every array of `tree` (e.g. a `TrainState`) on all devices of `mesh`.

    With several processes, every process must pass the same values (e.g.
    parameters initialised from the same key); each then fills its own
    devices from its own copy.
    """
    sharding = replicated(mesh)
    return place(tree, jax.tree_util.tree_map(lambda _: sharding, tree))


def place(tree: Any, shardings: Any) -> Any:
    """Put each array of `tree` on its sharding, from a full copy held by every process.

    With one process this is `jax.device_put`; with several, each process
    fills its own devices from its copy (`jax.make_array_from_callback`).
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def one(x, sharding):
        host = host_array(x)
        out = jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
        if hasattr(x, "dtype") and jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key):
            out = jax.random.wrap_key_data(out, impl=jax.random.key_impl(x))
        return out

    return jax.tree_util.tree_map(one, tree, shardings)


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


def shard_local_batch(local_batch: Batch, mesh: Mesh) -> Batch:
    """Assemble the global batch from every process's own rows, split across `mesh`.

    Each process passes only the rows its devices hold (from `keyed_shards`
    or its own loader); the global batch has `process_count` times as many
    rows, and no process ever holds all of them
    (`jax.make_array_from_process_local_data`). With one process this is
    `shard_batch`.

    Args:
      local_batch: a pytree of `[B_local, ...]` arrays, the same B_local in
        every process.
      mesh: the mesh over every process's devices (`make_mesh()`).

    Raises:
      ValueError: a leaf has no batch axis, or B_local is not a multiple of
        this process's device count in the mesh.
    """
    sharding = batch_sharding(mesh)
    local_devices = len(sharding.addressable_devices)
    leaves = jax.tree_util.tree_flatten_with_path(local_batch)[0]
    for path, leaf in leaves:
        shape = np.shape(leaf)
        where = jax.tree_util.keystr(path) or "the batch"
        if len(shape) == 0:
            raise ValueError(
                f"shard_local_batch: {where} is a scalar; every leaf needs a batch axis."
            )
        if shape[0] % local_devices:
            raise ValueError(
                f"shard_local_batch: {where} has {shape[0]} local rows (shape {shape}), which "
                f"this process's {local_devices} devices cannot split evenly."
            )

    def one(leaf):
        local = np.asarray(leaf)
        global_shape = (local.shape[0] * mesh.size // local_devices, *local.shape[1:])
        rows = local_row_range(sharding, global_shape[0])
        if len(rows) != local.shape[0]:  # pragma: no cover - guarded by the check above
            raise ValueError(f"expected {len(rows)} local rows; got {local.shape[0]}.")
        return jax.make_array_from_process_local_data(sharding, local, global_shape)

    return jax.tree_util.tree_map(one, local_batch)


def state_sharding(mesh: Mesh, *, carry_batch_axis: int = 0) -> TrainState:
    """Shardings of a `TrainState`: replicated, except a stream's carry, split by rows.

    Each field is one sharding (a pytree prefix of the state), so it fits any
    parameters, optimizer state and carry; with `carry=None` the state is
    simply replicated.

    Args:
      mesh: the mesh (`make_mesh()`).
      carry_batch_axis: the batch axis of the carry's leaves (0 for a cell's
        carry `[B, H]`, 1 for a stacked `lj.recurrent` net's `[layers, B, H]`).
    """
    carry_batch_axis = check_size("carry_batch_axis", carry_batch_axis, minimum=0)
    rep = replicated(mesh)
    split = NamedSharding(mesh, PartitionSpec(*([None] * carry_batch_axis), BATCH_AXIS))
    # A TrainState of shardings (the prefix tree jit takes), not of arrays: built by
    # position, as its fields' types do not apply.
    return TrainState._make((rep, rep, rep, rep, split))


def shard(step: StepFn, mesh: Mesh, *, carry_batch_axis: int = 0) -> StepFn:
    """Compile a training step for data parallelism over `mesh`.

    The state comes in and goes out replicated (a stream's carry split along
    its batch axis, so each device keeps the carry of its own rows), the
    batch comes in split along its leading axis (place it with
    `shard_batch`, or `shard_local_batch` with several processes) and the
    metrics are replicated. XLA partitions the step and inserts the
    gradient's all-reduce itself.

    Args:
      step: `(state, batch) -> (state, metrics)`, from
        `train.make_train_step` or `tbptt.stream(...)` of it.
      mesh: the mesh (`make_mesh()`).
      carry_batch_axis: the batch axis of the carry's leaves, for a stream.

    Returns:
      The jitted step with these shardings; place its first state with
      `place_state`.
    """
    states = state_sharding(mesh, carry_batch_axis=carry_batch_axis)
    return jax.jit(
        step,
        in_shardings=(states, batch_sharding(mesh)),
        out_shardings=(states, replicated(mesh)),
    )


def place_state(state: TrainState, mesh: Mesh, *, carry_batch_axis: int = 0) -> TrainState:
    """Place a `TrainState` for `shard(step, mesh)`: replicated, a carry split by rows.

    With several processes, every process must pass the same values (see `place`).
    """
    prefix = state_sharding(mesh, carry_batch_axis=carry_batch_axis)
    shardings = TrainState(
        *(
            jax.tree_util.tree_map(lambda _, s=sharding: s, field)
            for field, sharding in zip(state, prefix, strict=True)
        )
    )
    return place(state, shardings)


__all__ = [
    "BATCH_AXIS",
    "batch_sharding",
    "initialize",
    "is_primary",
    "keyed_shards",
    "make_mesh",
    "place",
    "place_state",
    "replicate",
    "replicated",
    "shard",
    "shard_batch",
    "shard_local_batch",
    "shard_range",
    "state_sharding",
]

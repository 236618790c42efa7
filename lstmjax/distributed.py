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

from lstmjax._checks import check_bool, check_callable, check_size
from lstmjax._training.processes import digest, gather_ints, host_array, local_row_range
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
    if devices is not None and (
        isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence)
    ):
        raise TypeError(
            f"make_mesh: devices must be a sequence of jax devices (e.g. jax.devices()) or "
            f"None; got {type(devices).__name__}."
        )
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device.")
    for i, device in enumerate(devices):
        if not isinstance(device, jax.Device):
            raise TypeError(
                f"make_mesh: devices[{i}] must be a jax device (from jax.devices()); got "
                f"{device!r} ({type(device).__name__})."
            )
    if len(set(devices)) != len(devices):
        raise ValueError(f"make_mesh: devices lists a device twice: {devices}.")
    return Mesh(np.array(devices), (BATCH_AXIS,))


def _check_mesh(mesh: Any, where: str) -> Mesh:
    """A `Mesh` with the "batch" axis (from `make_mesh`)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{where}: mesh must be a jax.sharding.Mesh (from distributed.make_mesh()); got "
            f"{type(mesh).__name__}."
        )
    if BATCH_AXIS not in mesh.axis_names:
        raise ValueError(
            f"{where}: mesh must have an axis named {BATCH_AXIS!r} (distributed.make_mesh() "
            f"builds one); got axes {mesh.axis_names}."
        )
    return mesh


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading axis across the mesh; other axes stay whole."""
    return NamedSharding(_check_mesh(mesh, "batch_sharding"), PartitionSpec(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(_check_mesh(mesh, "replicated"), PartitionSpec())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of `tree` (e.g. a `TrainState`) on all devices of `mesh`.

    With several processes, every process must pass the same values (e.g.
    parameters initialised from the same key); each then fills its own
    devices from its own copy.
    """
    sharding = replicated(_check_mesh(mesh, "replicate"))
    return place(tree, jax.tree_util.tree_map(lambda _: sharding, tree))


def place(tree: Any, shardings: Any) -> Any:
    """Put each array of `tree` on its sharding, from a full copy held by every process.

    With one process this is `jax.device_put`; with several, each process
    fills its own devices from its copy (`jax.make_array_from_callback`),
    after checking that every process holds the same values (a checksum of
    them is compared across processes: one small collective, and one pass
    over the values on the host).

    Raises:
      ValueError (in every process): the processes' copies differ (e.g.
        parameters initialised from different keys), which would train a
        different model on each process.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    mine = digest(treedef, *(host_array(x) for x in leaves))
    everyone = gather_ints(mine)[:, 0]
    if len(set(everyone.tolist())) > 1:
        groups: dict[int, list[int]] = {}
        for process, value in enumerate(everyone.tolist()):
            groups.setdefault(value, []).append(process)
        raise ValueError(
            "place: the processes hold different values to replicate (checksums by process "
            f"group: {sorted(groups.values())}); every process must pass the same values, e.g. "
            "parameters initialised from the same key and the same optimizer."
        )

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
    n = _check_mesh(mesh, "shard_batch").size
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


def shard_local_batch(local_batch: Batch, mesh: Mesh, *, check_processes: bool = True) -> Batch:
    """Assemble the global batch from every process's own rows, split across `mesh`.

    Each process passes only the rows its devices hold (from `keyed_shards`
    or its own loader); the global batch has `process_count` times as many
    rows, and no process ever holds all of them
    (`jax.make_array_from_process_local_data`). With one process this is
    `shard_batch`.

    With several processes and `check_processes=True` (default), every call
    also compares each process's batch (its rows, and the structure,
    trailing shapes and dtypes of its leaves) across processes: one small
    collective of two ints. Unequal batches (e.g. a loader whose last batch
    is short on one process) would otherwise give each process a different
    global batch, and a different loss, without a word. Measured on this
    project's loaded 2-core CPU, 2 processes on 127.0.0.1: 10 ms per call
    with the comparison, 0.6 ms without. Where that matters, compare on the
    first steps only, e.g. `check_processes=step < 10` inside `fit`'s
    `batch_fn(step)`: every process must pass the same value (it decides
    whether the collective runs).

    Args:
      local_batch: a pytree of `[B_local, ...]` arrays, the same B_local in
        every process.
      mesh: the mesh over every process's devices (`make_mesh()`).
      check_processes: compare the batch across processes (see above).

    Raises:
      ValueError: a leaf has no batch axis, the leaves differ in B_local,
        or B_local is not a multiple of this process's device count in the
        mesh; and, raised in every process, the processes hand in different
        B_local, structures, trailing shapes or dtypes.
    """
    sharding = batch_sharding(_check_mesh(mesh, "shard_local_batch"))
    local_devices = len(sharding.addressable_devices)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(local_batch)
    if not leaves:
        raise ValueError("shard_local_batch: the batch has no arrays.")
    rows = None
    for path, leaf in leaves:
        shape = np.shape(leaf)
        where = jax.tree_util.keystr(path) or "the batch"
        if len(shape) == 0:
            raise ValueError(
                f"shard_local_batch: {where} is a scalar; every leaf needs a batch axis."
            )
        if rows is None:
            rows, first = shape[0], where
        elif shape[0] != rows:
            raise ValueError(
                f"shard_local_batch: {where} has {shape[0]} local rows (shape {shape}), but "
                f"{first} has {rows}; every leaf of the batch needs the same B_local."
            )
        if shape[0] % local_devices:
            raise ValueError(
                f"shard_local_batch: {where} has {shape[0]} local rows (shape {shape}), which "
                f"this process's {local_devices} devices cannot split evenly."
            )
    assert rows is not None
    check_processes = check_bool("check_processes", check_processes)
    if check_processes and jax.process_count() > 1:
        layout = [(np.shape(leaf)[1:], np.result_type(leaf).name) for _, leaf in leaves]
        _check_same_batches(rows, digest(treedef, layout), layout)

    def one(leaf):
        local = np.asarray(leaf)
        global_shape = (local.shape[0] * mesh.size // local_devices, *local.shape[1:])
        rows = local_row_range(sharding, global_shape[0])
        if len(rows) != local.shape[0]:  # pragma: no cover - guarded by the check above
            raise ValueError(f"expected {len(rows)} local rows; got {local.shape[0]}.")
        return jax.make_array_from_process_local_data(sharding, local, global_shape)

    return jax.tree_util.tree_map(one, local_batch)


def _check_same_batches(rows: int, signature: int, layout: list) -> None:
    """Raise in every process unless all processes hand in batches of one shape."""
    table = gather_ints(rows, signature)
    if len(set(table[:, 0].tolist())) > 1:
        per = ", ".join(f"process {p}: {r}" for p, r in enumerate(table[:, 0].tolist()))
        raise ValueError(
            f"shard_local_batch: the processes hand in different numbers of local rows "
            f"({per}); every process must pass the same B_local, or the global batch "
            "(and the loss) would differ between processes."
        )
    if len(set(table[:, 1].tolist())) > 1:
        raise ValueError(
            "shard_local_batch: the processes hand in batches of different structure, "
            f"trailing shapes or dtypes; this process ({jax.process_index()}) has "
            f"(shape after B_local, dtype) per leaf {layout}. Every process must pass the "
            "same kind of batch."
        )


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
    _check_mesh(mesh, "state_sharding")
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
    check_callable("shard: step", step)
    _check_mesh(mesh, "shard")
    states = state_sharding(mesh, carry_batch_axis=carry_batch_axis)
    return jax.jit(
        step,
        in_shardings=(states, batch_sharding(mesh)),
        out_shardings=(states, replicated(mesh)),
    )


def place_state(state: TrainState, mesh: Mesh, *, carry_batch_axis: int = 0) -> TrainState:
    """Place a `TrainState` for `shard(step, mesh)`: replicated, a carry split by rows.

    With several processes, every process must pass the same values (see `place`).

    Raises:
      TypeError: `state` is not a `TrainState`.
      ValueError: a carry leaf has no axis `carry_batch_axis`, or its rows
        there cannot be split evenly over the mesh.
    """
    if not isinstance(state, TrainState):
        raise TypeError(
            f"place_state: state must be a train.TrainState (train.init_state(...)); got "
            f"{type(state).__name__}."
        )
    _check_mesh(mesh, "place_state")
    prefix = state_sharding(mesh, carry_batch_axis=carry_batch_axis)
    rows_per_split = mesh.shape[BATCH_AXIS]
    for path, leaf in jax.tree_util.tree_flatten_with_path(state.carry)[0]:
        shape, name = np.shape(leaf), "state.carry" + jax.tree_util.keystr(path)
        if carry_batch_axis >= len(shape):
            raise ValueError(
                f"place_state: carry_batch_axis={carry_batch_axis}, but {name} has shape "
                f"{shape}: the batch axis must be one of its axes (0 for a cell's carry "
                "[B, H], 1 for a stacked lj.recurrent net's [layers, B, H])."
            )
        if shape[carry_batch_axis] % rows_per_split:
            raise ValueError(
                f"place_state: {name} has {shape[carry_batch_axis]} rows along "
                f"carry_batch_axis={carry_batch_axis} (shape {shape}), which {rows_per_split} "
                "devices cannot split evenly."
            )
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

"""Several processes, one job: `jax.distributed` start-up and per-process data.

JAX's multi-controller model: the same script runs once per host (here,
once per process on 127.0.0.1); every process calls `initialize` before any
other JAX call, after which `jax.devices()` lists the devices of *all*
processes and `jax.local_devices()` those of this one. A jitted step over a
mesh of all devices then runs as one program: each process feeds its own
devices, and XLA's collectives (gloo on CPU, NCCL on GPU, ICI on TPU) carry
the gradient all-reduce between them.

Failure behaviour (from the coordination service that `initialize` starts):
every process sends heartbeats to the coordinator (process 0). A process
that stops sending them for `heartbeat_timeout_seconds` is declared dead and
every other process is stopped with an error; a collective whose peer died
usually fails sooner, as soon as its connection breaks. So no process waits
forever on a dead peer: the bound is the heartbeat timeout (plus a second or
two of polling), and `initialization_timeout` bounds the start-up when a
peer never arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import numpy as np

from lstmjax._checks import check_size
from lstmjax._typing import Batch, PRNGKey


def initialize(
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
    *,
    local_device_ids: Optional[Sequence[int]] = None,
    initialization_timeout: int = 300,
    heartbeat_timeout_seconds: int = 100,
    cpu_collectives: Optional[str] = "gloo",
) -> None:
    """Join this process to a multi-process JAX job (`jax.distributed.initialize`).

    Call it first, before any other JAX computation. Two forms:

    * explicit, e.g. two processes on one machine::

        initialize("127.0.0.1:12345", num_processes=2, process_id=rank)

    * automatic: on SLURM (`srun`), Open MPI (`mpirun`) and Cloud TPU, call
      `initialize()` with no arguments; JAX reads the coordinator, the
      number of processes and this process's id from the environment
      (`SLURM_*`, `OMPI_*`, the TPU metadata server).

    Args:
      coordinator_address: `"host:port"` of process 0, where the coordination
        service listens; every process passes the same one.
      num_processes: how many processes the job has.
      process_id: this process's id, in `0 .. num_processes - 1`.
      local_device_ids: restrict this process to these local devices.
      initialization_timeout: seconds to wait for every process to join
        before raising (default 300, JAX's own).
      heartbeat_timeout_seconds: seconds without a heartbeat after which a
        process is declared dead and the others are stopped with an error
        (default 100, JAX's own; tests use a few seconds).
      cpu_collectives: the cross-process collectives used by CPU devices
        (`jax_cpu_collectives_implementation`): "gloo" (default; it ships
        with jaxlib), "mpi", or None to leave JAX's setting alone. It has no
        effect on GPU or TPU devices.
    """
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
    )


def is_primary() -> bool:
    """True in process 0, the one that prints progress and writes logs."""
    return jax.process_index() == 0


def shard_range(num_shards: int, process_index: int, process_count: int) -> range:
    """The shards (blocks of rows of the global batch) that one process holds.

    Process p holds the p-th contiguous block of `num_shards / process_count`
    shards, which is the block of rows its devices hold in a mesh over
    `jax.devices()` (devices are listed process by process).

    Raises:
      ValueError: `num_shards` is not a positive multiple of `process_count`.
    """
    num_shards = check_size("num_shards", num_shards)
    if num_shards % process_count:
        raise ValueError(
            f"num_shards={num_shards} cannot be split evenly over {process_count} processes; "
            f"use a multiple of {process_count}."
        )
    per = num_shards // process_count
    return range(process_index * per, (process_index + 1) * per)


def keyed_shards(
    key: PRNGKey,
    make_shard: Callable[[PRNGKey], Batch],
    num_shards: int,
    *,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
) -> Callable[[int], Batch]:
    """A `fit` batch source that builds only this process's rows of each global batch.

    The global batch of step n is the concatenation, along the batch axis, of
    `make_shard(fold_in(fold_in(key, n), s))` for s = 0 .. num_shards - 1.
    Each process builds only its own shards (`shard_range`), so no process
    ever holds the whole batch, and the global batch is the same for every
    process count that divides `num_shards`: a one-process run reproduces a
    multi-process one exactly.

    Args:
      key: the data key.
      make_shard: `key -> batch` of `global_batch / num_shards` rows (jitted here).
      num_shards: how many shards make a global batch.
      process_index: default `jax.process_index()`; pass it (with
        `process_count`) to build another process's rows.
      process_count: default `jax.process_count()` (`process_count=1` gives
        the whole global batch).

    Returns:
      `step -> batch`, this process's rows of the global batch of `step`
      (place them with `distributed.shard_local_batch`).
    """
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    shards = shard_range(num_shards, index, count)

    @jax.jit
    def build(step):
        at_step = jax.random.fold_in(key, step)
        parts = [make_shard(jax.random.fold_in(at_step, s)) for s in shards]
        return jax.tree_util.tree_map(lambda *xs: jax.numpy.concatenate(xs, axis=0), *parts)

    # jit places the result on the default device; fetching it to the host
    # keeps the local batch a plain NumPy array, as a data loader would give.
    return lambda step: jax.device_get(build(step))


def local_row_range(sharding: jax.sharding.Sharding, global_rows: int) -> range:
    """The rows of a `[global_rows, ...]` array that live on this process's devices."""
    index_map = sharding.addressable_devices_indices_map((global_rows,))
    bounds = []
    for idx in index_map.values():
        assert idx is not None  # a device of the sharding holds its slice of rows
        bounds.append(idx[0].indices(global_rows)[:2])
    starts = [start for start, _ in bounds]
    stops = [stop for _, stop in bounds]
    rows = range(min(starts), max(stops))
    covered = sum(b - a for a, b in {(a, b) for a, b in zip(starts, stops, strict=True)})
    if covered != len(rows):
        raise ValueError(
            f"this process's devices hold rows that are not one contiguous block of the "
            f"{global_rows} rows; build the mesh from jax.devices() in their own order."
        )
    return rows


def host_array(x: Any) -> np.ndarray:
    """`x` as a NumPy array on the host (typed PRNG keys as their key data)."""
    if hasattr(x, "dtype") and jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(jax.device_get(x))

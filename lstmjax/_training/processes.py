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
peer never arrives: `initialize` then raises in every running process
(`lstmjax._training.rendezvous`), where JAX alone would abort them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import numpy as np

from lstmjax._array_checks import check_key
from lstmjax._checks import check_callable, check_index, check_size
from lstmjax._training.rendezvous import meet, parse_address
from lstmjax._typing import Batch, PRNGKey

CPU_COLLECTIVES = ("gloo", "mpi")


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

    Every argument is checked before anything changes (JAX's collectives
    setting included). In the explicit form every process first checks in
    with process 0 on the coordinator's port (`lstmjax._training.rendezvous`),
    so that a process 0 that never starts, a peer that never joins, two
    processes with one id or with different `num_processes` raise an error
    in every running process within `initialization_timeout`, where JAX's
    own handshake would end the process (SIGABRT). In the automatic form
    JAX's handshake runs alone, with JAX's failure behaviour.

    Args:
      coordinator_address: `"host:port"` of process 0, where the coordination
        service listens; every process passes the same one.
      num_processes: how many processes the job has (>= 1).
      process_id: this process's id, in `0 .. num_processes - 1`.
      local_device_ids: restrict this process to these local devices (ints >= 0).
      initialization_timeout: seconds (>= 1) to wait for every process to
        join before raising (default 300, JAX's own).
      heartbeat_timeout_seconds: seconds (>= 1) without a heartbeat after
        which a process is declared dead and the others are stopped with an
        error (default 100, JAX's own; tests use a few seconds).
      cpu_collectives: the cross-process collectives used by CPU devices
        (`jax_cpu_collectives_implementation`): "gloo" (default; it ships
        with jaxlib), "mpi", or None to leave JAX's setting alone. It has no
        effect on GPU or TPU devices. Set only once the job has met, and
        put back if JAX's start-up fails.

    Raises:
      TypeError, ValueError: an argument has the wrong type or value (before
        anything changes); two processes share an id, or disagree on
        `num_processes`.
      TimeoutError: process 0 never answered, or a process never joined,
        within `initialization_timeout`.
      OSError: process 0 cannot listen on the coordinator's port.
      RuntimeError: this process already joined a job, or JAX has already
        started its backends here (so `initialize` came too late).
    """
    # Every value as the Python value it holds (`_checks`' one rule), for JAX too.
    jax_args = _check_initialize_args(
        coordinator_address,
        num_processes,
        process_id,
        local_device_ids,
        initialization_timeout,
        heartbeat_timeout_seconds,
        cpu_collectives,
    )
    if jax.distributed.is_initialized():
        raise RuntimeError(
            "initialize: this process has already joined a job (jax.distributed.initialize "
            "ran); call it once, first."
        )
    if _backends_started():
        raise RuntimeError(
            "initialize must come before any other JAX call (a computation, jax.devices(), "
            "jax.device_put, ...): JAX has already started its backends in this process. "
            "Move the call to the start of the script."
        )
    address, count, pid = (
        jax_args[k] for k in ("coordinator_address", "num_processes", "process_id")
    )
    if address is not None and count is not None and pid is not None and count > 1:
        meet(address, count, pid, timeout=jax_args["initialization_timeout"])
    previous = jax.config.jax_cpu_collectives_implementation  # pyright: ignore[reportAttributeAccessIssue]
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    try:
        jax.distributed.initialize(**jax_args)
    except BaseException:
        jax.config.update("jax_cpu_collectives_implementation", previous)
        raise


def _check_initialize_args(
    coordinator_address,
    num_processes,
    process_id,
    local_device_ids,
    initialization_timeout,
    heartbeat_timeout_seconds,
    cpu_collectives,
) -> dict[str, Any]:
    """Check `initialize`'s arguments; each returned as the Python value it holds (ids a list).

    Returns the keyword arguments of `jax.distributed.initialize`, checked.
    """
    if coordinator_address is not None:
        if not isinstance(coordinator_address, str):
            raise TypeError(
                f'coordinator_address must be a str "host:port" or None; got '
                f"{coordinator_address!r} ({type(coordinator_address).__name__})."
            )
        parse_address(coordinator_address)
    if num_processes is not None:
        num_processes = check_size("num_processes", num_processes)
    if process_id is not None:
        if num_processes is None:
            process_id = check_size("process_id", process_id, minimum=0)
        else:
            process_id = check_index("process_id", process_id, num_processes, "processes")
    if local_device_ids is not None:
        if isinstance(local_device_ids, (str, bytes)) or not isinstance(local_device_ids, Sequence):
            raise TypeError(
                f"local_device_ids must be a sequence of ints >= 0 or None; got "
                f"{local_device_ids!r}."
            )
        local_device_ids = [
            check_size(f"local_device_ids[{i}]", device, minimum=0)
            for i, device in enumerate(local_device_ids)
        ]
    initialization_timeout = check_size("initialization_timeout", initialization_timeout)
    heartbeat_timeout_seconds = check_size("heartbeat_timeout_seconds", heartbeat_timeout_seconds)
    if cpu_collectives is not None and cpu_collectives not in CPU_COLLECTIVES:
        raise ValueError(
            f"cpu_collectives must be one of {list(CPU_COLLECTIVES)} or None; got "
            f"{cpu_collectives!r}."
        )
    return {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
        "local_device_ids": local_device_ids,
        "initialization_timeout": initialization_timeout,
        "heartbeat_timeout_seconds": heartbeat_timeout_seconds,
    }


def _backends_started() -> bool:
    """Whether JAX has started its backends in this process (then it is too late to join)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - a JAX without it: JAX's own check remains
        return False
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else False


def is_primary() -> bool:
    """True in process 0, the one that prints progress and writes logs."""
    return jax.process_index() == 0


def shard_range(num_shards: int, process_index: int, process_count: int) -> range:
    """The shards (blocks of rows of the global batch) that one process holds.

    Process p holds the p-th contiguous block of `num_shards / process_count`
    shards, which is the block of rows its devices hold in a mesh over
    `jax.devices()` (devices are listed process by process).

    Raises:
      TypeError: an argument is not an int.
      ValueError: `process_count` < 1, `process_index` outside
        `[0, process_count)`, or `num_shards` not a positive multiple of
        `process_count`.
    """
    num_shards = check_size("num_shards", num_shards)
    process_count = check_size("process_count", process_count)
    process_index = check_index("process_index", process_index, process_count, "processes")
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

    Raises:
      TypeError: `key` is not a JAX key, `make_shard` is not callable, or a
        count or index is not an int.
      ValueError: as for `shard_range`.
    """
    key = check_key(key, "keyed_shards")
    check_callable("keyed_shards: make_shard", make_shard)
    count = jax.process_count() if process_count is None else process_count
    index = jax.process_index() if process_index is None else process_index
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


def digest(*parts: Any) -> int:
    """A 31-bit checksum of strings and arrays, to compare across processes."""
    crc = 0
    for part in parts:
        if isinstance(part, np.ndarray):
            crc = zlib.crc32(f"{part.shape}{part.dtype}".encode(), crc)
            crc = zlib.crc32(np.ascontiguousarray(part).tobytes(), crc)
        else:
            crc = zlib.crc32(str(part).encode(), crc)
    return crc & 0x7FFFFFFF


def gather_ints(*values: int) -> np.ndarray:
    """Every process's `values`, one row per process: `[process_count, len(values)]`.

    A collective: every process of the job must call it, with as many values.
    With one process, no communication.
    """
    local = np.asarray(values, np.int32)
    if jax.process_count() == 1:
        return local[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(local)).reshape(jax.process_count(), -1)

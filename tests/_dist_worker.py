"""One process of a multi-process training job, run by `tests/test_multiprocess.py`.

    python tests/_dist_worker.py MODE --rank R --nproc N --port P [--devices D] ...

Every process of a job runs this script with its own `--rank`; they meet at
127.0.0.1:P through `distributed.initialize` (gloo collectives on CPU), each
with D forced host devices. Modes:

  train  train the tiny adding-problem LSTM of `_train_worker` with
         `train.fit` on a mesh over every process's devices, each process
         building only its own rows (`distributed.keyed_shards`); checkpoints
         and resume in --ckpt; process 0 prints "SAVED <step>" after each
         save. Each process writes its final params (and what it saw) to
         --out-<rank>.npz / .json; with --reference, process 0 also trains
         the same model on one local device on the whole global batch.
  dead   train step after step until something fails; the test kills one
         process and times how long the others take to stop.
  bench  time steps of a larger model (sequences/s) and report the bytes
         all-reduced per step, read from the compiled program.
  unequal  process 1 hands in half as many local rows as the others: every
         process must raise (shard_local_batch) instead of training on.
  replicas process 1 initialises its parameters from another key: every
         process must raise (place_state) instead of training on.
  start  initialize only, then print "STARTED": for the start-up failures
         (a process 0 that never comes, a peer that never joins).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "dead", "bench", "unequal", "replicas", "start"])
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--log", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--heartbeat", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--init-timeout", type=int, default=60)
    return parser.parse_args()


ARGS = parse()
# Must precede the first import of jax: the devices are fixed when XLA starts.
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _train_worker import flat_params, mse, tiny_lstm_regressor  # noqa: E402

from lstmjax import distributed, tasks, train  # noqa: E402

LEARNING_RATE = 1e-2


def setup(hidden: int, batch: int, shards: int, length: int):
    """Model, optimizer, fresh state and this process's batch source (same in every process)."""
    init, apply = tiny_lstm_regressor(hidden)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(LEARNING_RATE))
    state = train.init_state(init(jax.random.key(0)), optimizer, key=jax.random.key(2))
    rows = batch // shards

    def make_shard(key):
        return tasks.adding_problem(key, rows, length)

    local = distributed.keyed_shards(jax.random.key(1), make_shard, shards)
    return apply, optimizer, state, local, make_shard


def run_train(args) -> None:
    apply, optimizer, fresh, local, make_shard = setup(args.hidden, args.batch, args.shards,
                                                       args.length)  # fmt: skip
    mesh = distributed.make_mesh()
    step = distributed.shard(train.make_train_step(apply, mse, optimizer), mesh)
    seen = []

    def batches(i):
        time.sleep(args.delay)  # outside jit: only makes the run slow enough to kill
        rows = local(i)
        seen.append(int(np.shape(rows[0])[0]))
        return distributed.shard_local_batch(rows, mesh)

    def report(done, path):
        if distributed.is_primary():
            print(f"SAVED {done}", flush=True)

    state, history = train.fit(
        step,
        distributed.place_state(fresh, mesh),
        batches,
        args.steps,
        logging=train.Logging(path=args.log, quiet=False),
        checkpointing=train.Checkpointing(args.ckpt, every=args.every, keep=2, on_save=report),
    )
    params = {k: v for k, v in flat_params(jax.device_get(state.params)).items()}
    info = {
        "rank": jax.process_index(),
        "process_count": jax.process_count(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "mesh_size": mesh.size,
        "local_rows": seen,
        "losses": [r["loss"] for r in history.train],
        "first_step": history.train[0]["step"] if history.train else None,
    }
    if args.reference and distributed.is_primary():
        info["reference_losses"], reference = single_device_reference(
            apply, optimizer, fresh, make_shard, args
        )
        np.savez(f"{args.out}-reference.npz", **reference)
    np.savez(f"{args.out}-{args.rank}.npz", **params)
    with open(f"{args.out}-{args.rank}.json", "w") as f:
        json.dump(info, f)
    print("DONE", flush=True)


def single_device_reference(apply, optimizer, fresh, make_shard, args):
    """The same training on one local device, fed the whole global batch at once."""
    whole = distributed.keyed_shards(jax.random.key(1), make_shard, args.shards,
                                  process_index=0, process_count=1)  # fmt: skip
    device = jax.local_devices()[0]
    step = train.make_train_step(apply, mse, optimizer)
    state, losses = jax.device_put(fresh, device), []
    for i in range(args.steps):
        state, metrics = step(state, jax.device_put(whole(i), device))
        losses.append(float(metrics["loss"]))
    return losses, flat_params(jax.device_get(state.params))


def run_dead(args) -> None:
    apply, optimizer, fresh, local, _ = setup(args.hidden, args.batch, args.shards, args.length)
    mesh = distributed.make_mesh()
    step = distributed.shard(train.make_train_step(apply, mse, optimizer), mesh)
    state = distributed.place_state(fresh, mesh)
    i = 0
    while True:
        state, metrics = step(state, distributed.shard_local_batch(local(i), mesh))
        float(metrics["loss"])  # wait for the step (and its all-reduce)
        if i == 2:
            print("STEPPING", flush=True)
        i += 1
        time.sleep(0.05)


def allreduce_bytes(compiled_text: str) -> int:
    """Bytes of the operands of every all-reduce in an optimized HLO module."""
    import re

    sizes = {"f32": 4, "f64": 8, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1}
    total = 0
    for line in compiled_text.splitlines():
        if " all-reduce(" not in line and " all-reduce-start(" not in line:
            continue
        result = line.split("=", 1)[1].split(" all-reduce", 1)[0]
        for dtype, dims in re.findall(r"(f32|f64|bf16|f16|s32|u32|pred)\[([\d,]*)\]", result):
            total += sizes[dtype] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
    return total


def run_bench(args) -> None:
    apply, optimizer, fresh, local, _ = setup(args.hidden, args.batch, args.shards, args.length)
    mesh = distributed.make_mesh()
    step = distributed.shard(train.make_train_step(apply, mse, optimizer), mesh)
    state = distributed.place_state(fresh, mesh)
    batch = distributed.shard_local_batch(local(0), mesh)
    text = step.lower(state, batch).compile().as_text()
    state, metrics = step(state, batch)  # compile and warm up
    float(metrics["loss"])
    batches = [distributed.shard_local_batch(local(i), mesh) for i in range(1, args.steps + 1)]
    start = time.perf_counter()
    for batch in batches:
        state, metrics = step(state, batch)
    float(metrics["loss"])
    elapsed = time.perf_counter() - start
    grads = sum(np.size(x) * 4 for x in jax.tree_util.tree_leaves(fresh.params))
    if distributed.is_primary():
        out = {
            "processes": jax.process_count(),
            "devices": jax.device_count(),
            "sequences_per_s": args.steps * args.batch / elapsed,
            "allreduce_bytes": allreduce_bytes(text),
            "gradient_bytes": int(grads),
        }
        print("RESULT " + json.dumps(out), flush=True)


def run_unequal(args) -> None:
    apply, optimizer, fresh, local, _ = setup(args.hidden, args.batch, args.shards, args.length)
    mesh = distributed.make_mesh()
    step = distributed.shard(train.make_train_step(apply, mse, optimizer), mesh)
    state = distributed.place_state(fresh, mesh)
    rows = local(0)
    if args.rank == 1:  # a loader that hands this process fewer rows
        rows = jax.tree_util.tree_map(lambda x: x[: len(x) // 2], rows)
    state, metrics = step(state, distributed.shard_local_batch(rows, mesh))
    print(f"TRAINED ON loss={float(metrics['loss'])}", flush=True)


def run_replicas(args) -> None:
    init, _ = tiny_lstm_regressor(args.hidden)
    optimizer = optax.sgd(LEARNING_RATE)
    params = init(jax.random.key(args.rank))  # a different key in every process
    mesh = distributed.make_mesh()
    distributed.place_state(train.init_state(params, optimizer), mesh)
    print("PLACED", flush=True)


def main() -> None:
    distributed.initialize(
        f"127.0.0.1:{ARGS.port}", ARGS.nproc, ARGS.rank,
        initialization_timeout=ARGS.init_timeout, heartbeat_timeout_seconds=ARGS.heartbeat,
    )  # fmt: skip
    if ARGS.mode == "start":
        print("STARTED", flush=True)
        return
    modes = {"train": run_train, "dead": run_dead, "bench": run_bench,
             "unequal": run_unequal, "replicas": run_replicas}  # fmt: skip
    modes[ARGS.mode](ARGS)


if __name__ == "__main__":
    main()

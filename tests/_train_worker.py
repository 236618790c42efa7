"""A small model for the training tests, and a script they run as a subprocess.

Imported by the tests for `tiny_lstm_regressor` and `mse`; run as a script
(`python tests/_train_worker.py MODE ...`) by the tests that must kill a
process or need a fresh XLA with several host devices:

  fit      train an adding-problem LSTM with checkpoints (resuming from the
           latest one), print "SAVED <step>" after each save, write the final
           params to --out (.npz); with --reference-ckpt, then run the same
           training uninterrupted in a fresh directory (--reference-out);
  hang     save checkpoint 1, then start checkpoint 2 and hang at its commit
           point, lstmjax's rename (after "COMMITTING" is printed), until killed;
  hold     run `fit` slowly on --ckpt, printing "TRAINING <pid>" at the first
           batch, so that a test can try a second writer (and kill this one);
  shard    compare a sharded and a single-device run; print JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lstmjax as lj
from lstmjax import tasks, train

T, BATCH, HIDDEN = 10, 32, 16
# Clipping is part of the optimizer: the step, the state and the fingerprint all use this one.
OPTIMIZER = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))


class Regressor(NamedTuple):
    rnn: lj.LSTMParams
    head: lj.DenseParams


def tiny_lstm_regressor(hidden: int = HIDDEN):
    """`(init(key) -> Regressor, apply(params, xs [B, T, 2]) -> [B, 1])`, an LSTM read at T."""
    cell, head = lj.lstm(hidden), lj.dense(1)

    def init(key):
        k1, k2 = jax.random.split(key)
        return Regressor(rnn=cell.init(k1, 2), head=head.init(k2, hidden))

    def apply(params, xs):
        hs, _ = lj.unroll(cell, params.rnn, xs)
        return head.apply(params.head, hs[:, -1])

    return init, apply


def mse(pred, target):
    """Mean squared error, written out so these tests do not lean on `lstmjax.losses`."""
    return jnp.mean((pred - target) ** 2)


def adding_batches(seed: int = 1, batch: int = BATCH, length: int = T):
    """A `fit` batch source: step -> adding-problem batch, a pure function of the step."""
    return train.keyed_batches(
        jax.random.key(seed), lambda k: tasks.adding_problem(k, batch, length)
    )


def flat_params(params) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


@functools.cache
def fit_setup():
    """Model, jitted step and batch source, built once per process (one compilation)."""
    init, apply = tiny_lstm_regressor()
    step = train.make_train_step(apply, mse, OPTIMIZER)
    return init, step, adding_batches()


def fit_run(ckpt: str, steps: int, every: int, delay: float, announce: bool):
    """Train the adding-problem LSTM to `steps` updates, resuming from `ckpt` if it has one."""
    init, step, batches = fit_setup()
    state = train.init_state(init(jax.random.key(0)), OPTIMIZER, key=jax.random.key(2))

    def slow_batches(i):
        time.sleep(delay)  # outside jit: only makes the run slow enough to kill
        return batches(i)

    def report(done, path):
        if announce:
            print(f"SAVED {done}", flush=True)

    state, _ = train.fit(
        step,
        state,
        slow_batches,
        steps,
        logging=train.Logging(quiet=True),
        checkpointing=train.Checkpointing(ckpt, every=every, keep=2, on_save=report),
    )
    return state


def run_fit(args) -> None:
    """Train (or resume) in --ckpt; with --reference-ckpt, also a fresh uninterrupted run."""
    state = fit_run(args.ckpt, args.steps, args.every, args.delay, announce=True)
    np.savez(args.out, **flat_params(state.params))
    if args.reference_ckpt:
        reference = fit_run(args.reference_ckpt, args.steps, args.every, 0.0, announce=False)
        np.savez(args.reference_out, **flat_params(reference.params))
    print("DONE", flush=True)


def run_hang(args) -> None:
    from lstmjax._checkpointing import storage
    from lstmjax.checkpoint import Checkpointer

    init, _ = tiny_lstm_regressor()
    state = train.init_state(init(jax.random.key(0)), OPTIMIZER, key=jax.random.key(2))
    with Checkpointer(args.ckpt) as ckpt:
        ckpt.save(state._replace(step=jnp.asarray(1, jnp.int32)))
        print("SAVED 1", flush=True)

        def hang(staging, final):  # every file of the step is written; not yet renamed
            print("COMMITTING", flush=True)
            time.sleep(120)

        storage.commit = hang  # lstmjax's own commit point, not a dependency's
        changed = jax.tree_util.tree_map(lambda x: x + 1, state.params)
        ckpt.save(state._replace(params=changed, step=jnp.asarray(2, jnp.int32)))


def run_hold(args) -> None:
    """A slow `fit` that a test runs beside a second writer; it announces itself first."""
    import os

    init, step, batches = fit_setup()
    state = train.init_state(init(jax.random.key(0)), OPTIMIZER, key=jax.random.key(2))

    def slow_batches(i):
        if i == args.every:  # after its first checkpoint is saved
            print(f"TRAINING {os.getpid()}", flush=True)
        time.sleep(args.delay)
        return batches(i)

    train.fit(
        step,
        state,
        slow_batches,
        args.steps,
        logging=train.Logging(quiet=True),
        checkpointing=train.Checkpointing(args.ckpt, every=args.every, optimizer=OPTIMIZER),
    )


def indivisible_error(mesh, batch) -> str:
    """The message `shard_batch` gives for a batch of mesh.size + 2 rows."""
    from lstmjax import distributed

    try:
        distributed.shard_batch(jax.tree_util.tree_map(lambda x: x[: mesh.size + 2], batch), mesh)
    except ValueError as error:
        return str(error)
    return ""


def sharded_round_trip(state, like, directory: str) -> dict:
    """Save a replicated state and restore it into `like`: exact, and placed like `like`."""
    from lstmjax.checkpoint import Checkpointer

    with Checkpointer(directory) as ckpt:
        ckpt.save(state)
        restored = ckpt.restore(like).state

    def bits(x):
        return np.asarray(
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        )

    pairs = zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored), strict=True)
    return {
        "exact": all(np.array_equal(bits(a), bits(b)) for a, b in pairs),
        "devices": sorted(
            {len(x.sharding.device_set) for x in jax.tree_util.tree_leaves(restored)}
        ),
    }


def run_shard(args) -> None:
    from lstmjax import distributed

    init, apply = tiny_lstm_regressor()
    optimizer = OPTIMIZER
    fresh = train.init_state(init(jax.random.key(0)), optimizer, key=jax.random.key(2))
    batches = adding_batches(batch=args.batch)
    mesh = distributed.make_mesh()

    single_step = train.make_train_step(apply, mse, optimizer)
    sharded_step = distributed.shard(single_step, mesh)
    single, sharded = fresh, distributed.place_state(fresh, mesh)
    single_losses, sharded_losses, placements = [], [], []
    for i in range(args.steps):
        single, m1 = single_step(single, batches(i))
        batch = distributed.shard_batch(batches(i), mesh)
        placements.append(
            {
                "spec": list(batch[0].sharding.spec),
                "shards": [list(s.data.shape) for s in batch[0].addressable_shards],
                "devices": len(batch[0].sharding.device_set),
            }
        )
        sharded, m2 = sharded_step(sharded, batch)
        single_losses.append(float(m1["loss"]))
        sharded_losses.append(float(m2["loss"]))
    diffs = [
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(
            jax.tree_util.tree_leaves(single.params),
            jax.tree_util.tree_leaves(sharded.params),
            strict=True,
        )
    ]
    out = {
        "device_count": jax.device_count(),
        "mesh_size": mesh.size,
        "single_losses": single_losses,
        "sharded_losses": sharded_losses,
        "placements": placements,
        "param_specs": sorted(
            {str(list(x.sharding.spec)) for x in jax.tree_util.tree_leaves(sharded)}
        ),
        "max_param_diff": max(diffs),
        "indivisible_error": indivisible_error(mesh, batches(0)),
        "checkpoint": sharded_round_trip(sharded, distributed.place_state(fresh, mesh), args.ckpt),
    }
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["fit", "hang", "hold", "shard"])
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--reference-ckpt", default=None)
    parser.add_argument("--reference-out", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args()
    modes = {"fit": run_fit, "hang": run_hang, "hold": run_hold, "shard": run_shard}
    modes[args.mode](args)


if __name__ == "__main__":
    main()

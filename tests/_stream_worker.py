"""Truncated BPTT inside `fit`, run as a process that a test can kill mid-stream.

    python tests/_stream_worker.py --ckpt DIR --out FILE.npz [--delay S]
                                   [--reference-ckpt DIR --reference-out FILE.npz]

Trains the tiny language model of `stream_setup` with `tbptt.stream`
over a random token stream (3 chunks per pass, so the run wraps and resets),
checkpointing every `EVERY` updates and resuming from --ckpt; prints
"SAVED <step>" after each save, then writes the final params and carry to
--out. With --reference-ckpt it then trains again, uninterrupted, in a fresh
directory, and writes that run to --reference-out.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import numpy as np
import optax

import lstmjax as lj
from lstmjax import losses, tbptt, train
from lstmjax.lm import language_model

VOCAB, BATCH, CHUNK, CHUNKS, STEPS, EVERY = 7, 4, 5, 3, 12, 4


@functools.cache
def stream_setup():
    """Model, step, fresh state and the stream's batch source (float32), built once.

    Cached so that the reference run reuses the resumed run's compiled step.
    """
    model = language_model(VOCAB, 4, lj.lstm(8))
    tokens = jax.random.randint(jax.random.key(5), (BATCH, CHUNK * CHUNKS + 1), 0, VOCAB)
    batches = tbptt.stream_batches(tokens[:, :-1], tokens[:, 1:], CHUNK)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-2))
    one = train.make_train_step(lambda p, xs, c: model.apply(p, xs, c), losses.cross_entropy,
                                optimizer)  # fmt: skip
    step = tbptt.stream(one, model.initial_carry(BATCH), carry_batch_axis=1)
    state = train.init_state(
        model.init(jax.random.key(0)),
        optimizer,
        key=jax.random.key(1),
        carry=model.initial_carry(BATCH),
    )
    return step, state, batches


def flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def run(ckpt: str, delay: float, announce: bool):
    step, state, batches = stream_setup()

    def slow(n):
        time.sleep(delay)  # outside jit: only makes the run slow enough to kill
        return batches(n)

    def report(done, path):
        if announce:
            print(f"SAVED {done}", flush=True)

    state, _ = train.fit(
        step,
        state,
        slow,
        STEPS,
        logging=train.Logging(quiet=True),
        checkpointing=train.Checkpointing(ckpt, every=EVERY, keep=2, on_save=report),
    )
    return {**flat({"params": state.params, "carry": state.carry})}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--reference-ckpt", default=None)
    parser.add_argument("--reference-out", default=None)
    args = parser.parse_args()
    np.savez(args.out, **run(args.ckpt, args.delay, announce=True))
    if args.reference_ckpt:
        np.savez(args.reference_out, **run(args.reference_ckpt, 0.0, announce=False))
    print("DONE", flush=True)


if __name__ == "__main__":
    main()

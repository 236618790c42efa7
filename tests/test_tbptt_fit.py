"""Truncated BPTT inside `fit`: the carry in the state, checkpointed, resumed exactly.

The reference is a hand-written loop: each chunk starts from a carry held as
a NumPy constant (so no gradient can reach it), gradients are clipped by a
global norm computed by hand, and the carry is reset at the start of every
pass. It runs in float64, where the two must agree to 1e-10.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lstmjax as lj
from lstmjax import distributed, losses, tbptt, train
from lstmjax.lm import language_model

WORKER = Path(__file__).with_name("_stream_worker.py")
B, K, CHUNKS, VOCAB, CLIP = 3, 4, 3, 6, 0.5


def setup():
    model = language_model(VOCAB, 5, lj.lstm(6, dtype=jnp.float64), dtype=jnp.float64)
    params = model.init(jax.random.key(0))
    # 4 chunks' worth of stream; the passes use the first 3 only.
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (B, 4 * K + 1), 0, VOCAB))
    return model, params, tokens[:, :-1], tokens[:, 1:]


def reference_run(model, params, xs, ys, optimizer, steps):
    opt_state, losses_out = optimizer.init(params), []
    initial = jax.tree_util.tree_map(np.asarray, model.initial_carry(B))
    carry = initial

    # Differentiated in the parameters only: the carry c0 enters as data (a
    # NumPy array from the previous chunk), which is the truncation.
    def loss(p, x, y, c0):
        return losses.cross_entropy(model.apply(p, x, c0)[0], y)

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    forward = jax.jit(lambda p, x, c0: model.apply(p, x, c0)[1])
    for n in range(steps):
        j = n % CHUNKS
        if j == 0:
            carry = initial  # every pass starts from a fresh carry
        x, y = xs[:, j * K : (j + 1) * K], ys[:, j * K : (j + 1) * K]
        value, grads = value_and_grad(params, x, y, carry)
        norm = np.sqrt(sum(float(np.sum(np.square(g))) for g in jax.tree_util.tree_leaves(grads)))
        scale = min(1.0, CLIP / norm)
        grads = jax.tree_util.tree_map(lambda g, s=scale: g * s, grads)
        carry = jax.tree_util.tree_map(np.asarray, forward(params, x, carry))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        losses_out.append(float(value))
    return params, carry, losses_out


def test_fit_over_a_stream_equals_a_hand_written_truncated_loop():
    model, params, xs, ys = setup()
    optimizer = optax.adam(1e-2)
    steps = 7  # passes of 3 chunks: resets before updates 0, 3 and 6
    clipped = optax.chain(optax.clip_by_global_norm(CLIP), optimizer)
    one = train.make_train_step(lambda p, x, c: model.apply(p, x, c), losses.cross_entropy, clipped)
    step = tbptt.stream(one, model.initial_carry(B), carry_batch_axis=1)
    state = train.init_state(params, clipped, carry=model.initial_carry(B))
    batches = tbptt.stream_batches(xs, ys, K, num_chunks=CHUNKS)
    state, history = train.fit(step, state, batches, steps, logging=train.Logging(quiet=True))
    ref_params, ref_carry, ref_losses = reference_run(model, params, xs, ys, optimizer, steps)
    np.testing.assert_allclose([r["loss"] for r in history.train], ref_losses, rtol=1e-10)
    for got, want in zip(
        jax.tree_util.tree_leaves((state.params, state.carry)),
        jax.tree_util.tree_leaves((ref_params, ref_carry)),
        strict=True,
    ):
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # The data-parallel stream step (one device here: the wiring, shardings and carry
    # placement) follows the same reference.
    mesh = distributed.make_mesh()
    sharded = distributed.shard(step, mesh, carry_batch_axis=1)
    fresh = train.init_state(params, clipped, carry=model.initial_carry(B))
    placed = distributed.place_state(fresh, mesh, carry_batch_axis=1)
    for n in range(steps):
        placed, _ = sharded(placed, distributed.shard_batch(batches(n), mesh))
    for leaf in jax.tree_util.tree_leaves(placed.carry):  # [layers, B, H], split along B
        assert tuple(leaf.sharding.spec)[:2] == (None, "batch"), leaf.sharding.spec
    for got, want in zip(
        jax.tree_util.tree_leaves((placed.params, placed.carry)),
        jax.tree_util.tree_leaves((ref_params, ref_carry)),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert int(state.step) == steps
    # The carry matters here: resetting it before every chunk gives other losses.
    fresh = train.init_state(params, clipped, carry=model.initial_carry(B))
    _, forgetful = train.fit(
        step,
        fresh,
        lambda n: batches(n)._replace(reset=np.ones(B, bool)),
        2,
        logging=train.Logging(quiet=True),
    )
    assert abs(forgetful.train[1]["loss"] - ref_losses[1]) > 1e-4


def test_reset_carry_replaces_exactly_the_marked_rows():
    carry = (np.arange(24.0).reshape(2, 3, 4), np.ones((2, 3, 4)))  # [layers, B, H]
    initial = (np.zeros((2, 3, 4)), np.full((2, 3, 4), 7.0))
    out = tbptt.reset_carry(carry, initial, jnp.array([False, True, False]), batch_axis=1)
    expected_h = carry[0].copy()
    expected_h[:, 1] = 0.0
    expected_c = carry[1].copy()
    expected_c[:, 1] = 7.0
    np.testing.assert_array_equal(out[0], expected_h)
    np.testing.assert_array_equal(out[1], expected_c)


def test_stream_chunks_and_resets_follow_the_step_number():
    xs = np.arange(2 * 10).reshape(2, 10)
    batches = tbptt.stream_batches(xs, xs + 100, 3)  # 3 chunks per pass; step 9 unused
    chunk = batches(4)  # pass 1, chunk 1
    np.testing.assert_array_equal(chunk.xs, xs[:, 3:6])
    np.testing.assert_array_equal(chunk.ys, xs[:, 3:6] + 100)
    assert not np.any(chunk.reset) and np.all(batches(3).reset) and np.all(batches(0).reset)


def test_stream_errors_name_the_argument():
    xs = np.zeros((2, 10))
    with pytest.raises(ValueError, match="chunk_len must be an int >= 1; got 0"):
        tbptt.stream_batches(xs, xs, 0)
    with pytest.raises(ValueError, match=r"num_chunks=4 must be an int in 1\.\.3"):
        tbptt.stream_batches(xs, xs, 3, num_chunks=4)
    with pytest.raises(ValueError, match="same batch and time"):
        tbptt.stream_batches(xs, np.zeros((3, 10)), 3)
    model, params, xs, ys = setup()
    one = train.make_train_step(lambda p, x, c: model.apply(p, x, c), losses.cross_entropy,
                                optax.sgd(0.1))  # fmt: skip
    step = tbptt.stream(one, model.initial_carry(B), carry_batch_axis=1)
    state = train.init_state(params, optax.sgd(0.1))  # no carry
    with pytest.raises(ValueError, match=r"tbptt\.stream needs the carry in the state"):
        step(state, tbptt.stream_batches(xs, ys, K)(0))


@pytest.mark.integration  # a fresh interpreter killed or started mid-run
def test_a_stream_killed_mid_way_resumes_bit_identical(tmp_path):
    ckpt, out = tmp_path / "run", tmp_path / "resumed.npz"
    command = [sys.executable, str(WORKER), "--ckpt", str(ckpt), "--out", str(out)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    lines = []
    with subprocess.Popen([*command, "--delay", "0.2"], stdout=subprocess.PIPE, text=True,
                          env=env) as proc:  # fmt: skip
        try:
            for line in proc.stdout:
                lines.append(line.strip())
                if line.startswith("SAVED 4"):  # mid-stream: chunk 1 of the second pass
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and lines == ["SAVED 4"], lines
    assert not out.exists()
    done = subprocess.run(
        [*command, "--reference-ckpt", str(tmp_path / "ref"),
         "--reference-out", str(tmp_path / "ref.npz")],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = [line for line in done.stdout.splitlines() if line.startswith("SAVED")]
    assert saved[0] in ("SAVED 8", "SAVED 12"), saved  # it resumed, not restarted
    resumed, reference = np.load(out), np.load(tmp_path / "ref.npz")
    assert sorted(resumed.files) == sorted(reference.files)
    assert any("carry" in name for name in reference.files)
    for name in reference.files:
        assert resumed[name].dtype == np.float32
        assert np.array_equal(resumed[name], reference[name]), name
    carry = [reference[n] for n in reference.files if "carry" in n]
    assert all(np.any(c != 0) for c in carry)  # a live carry, not the zeros it starts from

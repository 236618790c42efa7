"""Ensembles: member m of a population equals an independent run with member m's seed and rate.

The independent runs use `make_train_step` on one model each (its own seed
and learning rate); the population is `jax.vmap` of `init_state`, trained by
`jax.vmap(step, in_axes=(0, None))`, by `train.ensemble(step)` (a loop over
the members inside one step) and by `fit`. The per-member learning rate lives
in the optimizer state (`optax.inject_hyperparams`), so one step serves all.
In float32 the layouts reorder nothing within a member, but XLA may fuse a
member's arithmetic differently in a loop or a batched program, so agreement
is to rounding: 1e-6 on parameters of order 1 after 6 Adam steps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_worker import mse, tiny_lstm_regressor

from lstmjax import tasks, train

MEMBERS, STEPS = 3, 6
RATES = np.array([3e-2, 1e-2, 3e-3], np.float32)


def optimizer(learning_rate):
    """Clipping, then Adam with the learning rate kept in the optimizer state."""
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    return optax.chain(optax.clip_by_global_norm(1.0), adam)


def batches(step):
    xs, ys = tasks.adding_problem(jax.random.fold_in(jax.random.key(7), step), 16, 8)
    return xs.astype(jnp.float32), ys.astype(jnp.float32)


def member_keys(m: int):
    """`(params key, state key)` of member m: an independent run uses the same."""
    return jax.random.split(jax.random.key(m))


def population():
    init, _ = tiny_lstm_regressor(8)

    def member(key, learning_rate):
        params_key, state_key = jax.random.split(key)
        return train.init_state(init(params_key), optimizer(learning_rate), key=state_key)

    keys = jnp.stack([jax.random.key(m) for m in range(MEMBERS)])
    return jax.vmap(member)(keys, jnp.asarray(RATES))


@functools.cache
def single_step():
    """One model's step; the learning rate comes from the state, so one step serves all."""
    _, apply = tiny_lstm_regressor(8)
    return train.make_train_step(apply, mse, optimizer(1e-3))


@pytest.fixture(scope="module")
def independent():
    """Each member's own run: its seed's keys, its own rate, `make_train_step`, no vmap."""
    init, _ = tiny_lstm_regressor(8)
    step = single_step()  # the learning rate is read from each run's own state
    out = []
    for m in range(MEMBERS):
        params_key, state_key = member_keys(m)
        state = train.init_state(init(params_key), optimizer(float(RATES[m])), key=state_key)
        losses = []
        for n in range(STEPS):
            state, metrics = step(state, batches(n))
            losses.append(float(metrics["loss"]))
        out.append((state, losses))
    return out


def assert_members_match(population, independent, losses=None):
    for m, (state, member_losses) in enumerate(independent):
        member = train.member_state(population, m)
        for got, want in zip(jax.tree_util.tree_leaves(member.params),
                             jax.tree_util.tree_leaves(state.params), strict=True):  # fmt: skip
            assert got.dtype == jnp.float32
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert np.array_equal(jax.random.key_data(member.rng), jax.random.key_data(state.rng))
        if losses is not None:
            np.testing.assert_allclose(np.asarray(losses)[:, m], member_losses, rtol=1e-6)
    # The members really differ (seeds and rates), so the comparison is not vacuous.
    first = jax.tree_util.tree_leaves(independent[0][0].params)[0]
    assert not np.allclose(first, jax.tree_util.tree_leaves(independent[1][0].params)[0])


@pytest.mark.parametrize("layout", ["ensemble", "vmap"])
def test_member_m_equals_an_independent_run_with_seed_m(independent, layout):
    one = single_step()
    step = train.ensemble(one) if layout == "ensemble" else jax.jit(jax.vmap(one, (0, None)))
    state = population()
    assert state.step.shape == (MEMBERS,) and state.rng.shape == (MEMBERS,)
    losses = []
    for n in range(STEPS):
        state, metrics = step(state, batches(n))
        assert metrics["loss"].shape == (MEMBERS,)
        losses.append(np.asarray(metrics["loss"]))
    assert np.all(np.asarray(state.step) == STEPS)
    assert_members_match(state, independent, losses)


def test_fit_trains_logs_and_resumes_a_population(independent, tmp_path):
    step = jax.vmap(single_step(), in_axes=(0, None))
    ckpt = train.Checkpointing(tmp_path / "ckpt", every=3)
    quiet = train.Logging(quiet=True)
    _, first = train.fit(step, population(), batches, 3, logging=quiet, checkpointing=ckpt)
    log = train.Logging(path=tmp_path / "log.jsonl", quiet=True)
    state, rest = train.fit(step, population(), batches, STEPS, logging=log, checkpointing=ckpt)
    records = first.train + rest.train
    assert rest.resumed_from == 3
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all(len(r["loss"]) == MEMBERS and len(r["finite"]) == MEMBERS for r in records)
    assert_members_match(state, independent, [r["loss"] for r in records])
    assert (tmp_path / "log.jsonl").read_text().count('"loss": [') == STEPS - 3


def test_member_state_checks_its_index():
    with pytest.raises(ValueError, match=r"m must be an int in \[0, 3\) \(3 members\); got -1"):
        train.member_state(population(), -1)

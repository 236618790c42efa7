"""Ensembles: member m of a population equals an independent run with seed m.

The independent runs use `make_train_step` on one model each (its own seed
and learning rate); the population is trained by `make_ensemble_step` in
every layout and by `fit`. In float32 the layouts reorder nothing within a
member, but XLA may fuse a member's arithmetic differently in a loop or a
batched program, so agreement is to rounding: 1e-6 on parameters of order 1
after 6 Adam steps.
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


def factory(learning_rate):
    return optax.adam(learning_rate)


def batches(step):
    xs, ys = tasks.adding_problem(jax.random.fold_in(jax.random.key(7), step), 16, 8)
    return xs.astype(jnp.float32), ys.astype(jnp.float32)


@pytest.fixture(scope="module")
def independent():
    """Each member's own run: its seed's keys, its learning rate, `make_train_step`."""
    init, apply = tiny_lstm_regressor(8)

    # One model's step, the learning rate an argument so it compiles once for all runs.
    @jax.jit
    def step(state, batch, learning_rate):
        return train.train_step_fn(apply, mse, optax.adam(learning_rate), 1.0)(state, batch)

    out = []
    for m in range(MEMBERS):
        params_key, state_key = train.member_seed_keys(m)
        state = train.init_state(init(params_key), optax.adam(float(RATES[m])), state_key)
        losses = []
        for n in range(STEPS):
            state, metrics = step(state, batches(n), RATES[m])
            losses.append(float(metrics["loss"]))
        out.append((state, losses))
    return out


@functools.cache
def ensemble_step(layout: str):
    """One compiled population step per layout, shared by the tests."""
    _, apply = tiny_lstm_regressor(8)
    hyper = {"learning_rate": RATES}
    return train.make_ensemble_step(apply, mse, factory, hyper, clip_norm=1.0, layout=layout)


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


@pytest.mark.parametrize("layout", ["map", "vmap"])
def test_member_m_equals_an_independent_run_with_seed_m(independent, layout):
    init, _ = tiny_lstm_regressor(8)
    step = ensemble_step(layout)
    state = train.init_ensemble(init, factory, range(MEMBERS), {"learning_rate": RATES})
    assert state.step.shape == () and state.rng.shape == (MEMBERS,)
    losses = []
    for n in range(STEPS):
        state, metrics = step(state, batches(n))
        assert metrics["loss"].shape == (MEMBERS,)
        losses.append(np.asarray(metrics["loss"]))
    assert int(state.step) == STEPS
    assert_members_match(state, independent, losses)


def test_plain_vmap_over_the_train_step_also_trains_the_population(independent):
    # What a user would write by hand: one learning rate per member, vmapped.
    init, apply = tiny_lstm_regressor(8)

    def one(state, batch, learning_rate):
        return train.train_step_fn(apply, mse, optax.adam(learning_rate), 1.0)(state, batch)

    axes = train.TrainState(params=0, opt_state=0, step=None, rng=0)
    step = jax.jit(jax.vmap(one, in_axes=(axes, None, 0), out_axes=(axes, 0)))
    state = train.init_ensemble(init, factory, range(MEMBERS), {"learning_rate": RATES})
    for n in range(STEPS):
        state, _ = step(state, batches(n), RATES)
    assert_members_match(state, independent)


def test_fit_trains_logs_and_resumes_a_population(independent, tmp_path):
    init, _ = tiny_lstm_regressor(8)
    step = ensemble_step("map")  # the default layout
    fresh = train.init_ensemble(init, factory, range(MEMBERS), {"learning_rate": RATES})
    ckpt = tmp_path / "ckpt"
    _, first = train.fit(step, fresh, batches, 3, checkpoint_dir=ckpt, checkpoint_every=3,
                         quiet=True)  # fmt: skip
    state, rest = train.fit(step, fresh, batches, STEPS, checkpoint_dir=ckpt,
                            log_path=tmp_path / "log.jsonl", quiet=True)  # fmt: skip
    records = first.train + rest.train
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all(len(r["loss"]) == MEMBERS and len(r["finite"]) == MEMBERS for r in records)
    assert_members_match(state, independent, [r["loss"] for r in records])
    assert (tmp_path / "log.jsonl").read_text().count('"loss": [') == STEPS - 3


def test_ensemble_errors_name_the_argument():
    init, apply = tiny_lstm_regressor(8)
    with pytest.raises(ValueError, match=r"one value per member, shape \(3,\)"):
        train.init_ensemble(init, factory, range(3), {"learning_rate": np.ones(2)})
    with pytest.raises(ValueError, match="need an optimizer factory"):
        train.init_ensemble(init, optax.adam(1e-3), range(3), {"learning_rate": np.ones(3)})
    with pytest.raises(ValueError, match="layout must be one of"):
        train.make_ensemble_step(apply, mse, factory, layout="scan")
    with pytest.raises(ValueError, match="non-empty sequence of ints"):
        train.init_ensemble(init, factory, [])

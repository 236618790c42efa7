"""The one rule for numeric and boolean options (`lstmjax._checks.scalar`), at every door.

A NumPy scalar (`np.int64(3)`, `np.float32(0.5)`, `np.True_`) or a concrete 0-d
array is taken as the Python value it holds: option objects store that value, so
they compare and hash equal to the ones built from Python values (one compiled
program), and functions give the same results. A traced value, a bool where a
number is wanted, a number where a bool is wanted, and a value out of range are
refused by lstmjax with a message that names the argument (`hostile.assert_clear`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj
from lstmjax import checkpoint, diagnostics, distributed, dynamics, generate, tasks, tbptt, train

KEY = jax.random.key(0)
GRU = lj.gru(3)
GRU_PARAMS = GRU.init(KEY, 2)
XS = jax.random.normal(jax.random.key(1), (2, 4, 2))
STREAM = jnp.arange(2 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 1)


def python_values(obj) -> list[tuple[str, type]]:
    """The fields of a dataclass that hold a number or a bool, with their types."""
    return [
        (f.name, type(getattr(obj, f.name)))
        for f in dataclasses.fields(obj)
        if isinstance(getattr(obj, f.name), (int, float, bool, np.generic, np.ndarray, jax.Array))
    ]


# Each pair: (built from NumPy scalars and 0-d arrays, built from the Python values).
SAME_OPTIONS = {
    "Scan": (
        lambda: lj.Scan(unroll=np.int64(2), remat=np.True_, column_blocks=np.False_),
        lambda: lj.Scan(unroll=2, remat=True, column_blocks=False),
    ),
    "Scan remat steps": (lambda: lj.Scan(remat=jnp.asarray(3)), lambda: lj.Scan(remat=3)),
    "Affine": (lambda: lj.Affine(chunk=np.int32(8)), lambda: lj.Affine(chunk=8)),
    "QuasiNewton": (
        lambda: lj.QuasiNewton(max_iters=np.array(5), tol=np.float64(1e-6)),
        lambda: lj.QuasiNewton(max_iters=5, tol=1e-6),
    ),
    "ELK": (lambda: lj.ELK(damping=np.float32(0.5)), lambda: lj.ELK(damping=0.5)),
    "lstm": (
        lambda: lj.lstm(
            np.int64(4), peephole=np.True_, forget_bias=np.float32(0.5), proj_size=np.int8(2)
        ),
        lambda: lj.lstm(4, peephole=True, forget_bias=0.5, proj_size=2),
    ),
    "gru": (
        lambda: lj.gru(jnp.asarray(4), reset_after=np.True_, layer_norm=np.True_),
        lambda: lj.gru(4, reset_after=True, layer_norm=True),
    ),
    "ctrnn": (
        lambda: lj.ctrnn(np.int64(3), tau=np.float64(2.0), dt=np.array(0.5)),
        lambda: lj.ctrnn(3, tau=2.0, dt=0.5),
    ),
    "mlstm": (
        lambda: lj.mlstm(np.int64(4), num_heads=np.int64(2)),
        lambda: lj.mlstm(4, num_heads=2),
    ),
    "recurrent": (
        lambda: lj.recurrent(
            GRU,
            num_layers=np.int64(2),
            bidirectional=np.True_,
            dropout=np.float32(0.25),
            zoneout=np.array(0.5),
            state_noise=np.float64(0.125),
        ),
        lambda: lj.recurrent(
            GRU, num_layers=2, bidirectional=True, dropout=0.25, zoneout=0.5, state_noise=0.125
        ),
    ),
    "map_cell": (
        lambda: dynamics.map_cell(jnp.tanh, np.int64(2)),
        lambda: dynamics.map_cell(jnp.tanh, 2),
    ),
    "Checkpointing": (
        lambda: train.Checkpointing("ck", every=np.int64(2), keep=np.int32(1), resume=np.False_),
        lambda: train.Checkpointing("ck", every=2, keep=1, resume=False),
    ),
    "Logging": (
        lambda: train.Logging(every=np.uint8(3), quiet=np.True_),
        lambda: train.Logging(every=3, quiet=True),
    ),
}


@pytest.mark.parametrize("case", list(SAME_OPTIONS), ids=list(SAME_OPTIONS))
def test_numpy_options_are_the_python_values(case):
    numpy_built, python_built = (make() for make in SAME_OPTIONS[case])
    assert numpy_built == python_built and hash(numpy_built) == hash(python_built)
    assert python_values(numpy_built) == python_values(python_built)
    for name, kind in python_values(numpy_built):
        assert kind in (int, float, bool), (case, name, kind)


def test_checkpointer_options(tmp_path):
    with checkpoint.Checkpointer(tmp_path, keep=np.int64(2), writer=np.True_) as ck:
        assert (type(ck.keep), ck.keep, type(ck.writer), ck.writer) == (int, 2, bool, True)
        assert ck.path(np.int64(7)) == ck.path(7) == tmp_path / "7"
    with checkpoint.Checkpointer(tmp_path, writer=np.False_) as reader:
        assert reader.writer is False


def test_functions_give_the_python_values_results():
    # The jitted task generators: one program for 3 and np.int64(3), 0-d arrays taken.
    np.testing.assert_array_equal(
        tasks.copy_task(KEY, np.int64(2), np.array(3)), tasks.copy_task(KEY, 2, 3)
    )
    np.testing.assert_array_equal(
        tasks.temporal_order(KEY, np.int32(2), 10, one_hot=np.False_)[0],
        tasks.temporal_order(KEY, 2, 10, one_hot=False)[0],
    )
    # The streams' chunking (tbptt): the same chunks.
    numpy_chunks = tbptt.stream_batches(STREAM, STREAM, np.int64(2), num_chunks=np.array(3))
    python_chunks = tbptt.stream_batches(STREAM, STREAM, 2, num_chunks=3)
    for n in range(4):
        np.testing.assert_array_equal(numpy_chunks(n).xs, python_chunks(n).xs)
    # Carries, shards, top-k.
    carry = GRU.initial_carry((np.int64(2), jnp.asarray(3)))
    assert carry.shape == (2, 3, 3)
    net = lj.recurrent(GRU, num_layers=2)
    assert net.initial_carry(np.int64(5)).shape == net.initial_carry(5).shape == (2, 5, 3)
    assert distributed.shard_range(np.int64(4), np.int64(1), np.array(2)) == range(2, 4)
    logits = jnp.array([[0.5, 2.0, -1.0, 1.0]])
    np.testing.assert_array_equal(
        generate.filter_logits(logits, top_k=np.int64(2)), generate.filter_logits(logits, top_k=2)
    )
    corpus = tasks.char_corpus("abcdefgh", valid_fraction=np.float32(0.25))
    assert (len(corpus.train), len(corpus.valid)) == (6, 2)
    # unroll's flags: np.True_ means True, a 0-d False array False (the same pass).
    np.testing.assert_array_equal(
        lj.unroll(GRU, GRU_PARAMS, XS, reverse=np.True_, time_major=jnp.asarray(False))[0],
        lj.unroll(GRU, GRU_PARAMS, XS, reverse=True)[0],
    )


def test_a_depth_of_zero_is_one_group_of_all():
    """`param_group_grad_norms(depth=0)`: one group, the global norm (NumPy float64 reference)."""
    grads = {"a": jnp.array([3.0, 4.0]), "b": (jnp.array([[12.0]]),)}
    got = diagnostics.param_group_grad_norms(grads, depth=np.int64(0))
    assert list(got) == ["all"]
    np.testing.assert_allclose(got["all"], np.sqrt(9.0 + 16.0 + 144.0), rtol=1e-6)
    assert list(diagnostics.param_group_grad_norms(grads, depth=np.int64(1))) == ["a", "b"]


def traced(build):
    """Call `build` on a traced value inside `jax.jit` (the option then cannot be known)."""
    return lambda: jax.jit(lambda v: jnp.zeros(()) + len(repr(build(v))))(1)


CASES = {
    # Traced values: refused by name, saying why.
    "Scan unroll traced": (
        TypeError,
        traced(lambda v: lj.Scan(unroll=v)),
        r"Scan: unroll must be a concrete number: it fixes the program.*got a traced value "
        r"\(from inside jax\.jit, vmap or grad\)",
    ),
    "Scan remat traced": (
        TypeError,
        traced(lambda v: lj.Scan(remat=v)),
        r"Scan: remat must be a concrete number",
    ),
    "stream num_chunks traced": (
        TypeError,
        traced(lambda v: tbptt.stream_batches(STREAM, STREAM, 2, num_chunks=v)),
        r"num_chunks must be a concrete number",
    ),
    "state_noise traced": (
        TypeError,
        traced(lambda v: lj.recurrent(GRU, state_noise=v * 0.5)),
        r"state_noise must be a concrete number: it fixes the dropout masks",
    ),
    "Checkpointing keep traced": (
        TypeError,
        traced(lambda v: train.Checkpointing("ck", keep=v)),
        r"Checkpointing: keep must be a concrete number",
    ),
    "a task's static size traced": (
        TypeError,
        traced(lambda v: tasks.copy_task(KEY, v, 3)),
        r"batch_size must be a concrete number",
    ),
    "unroll reverse traced": (
        TypeError,
        lambda: jax.jit(lambda r: lj.unroll(GRU, GRU_PARAMS, XS, reverse=r))(True),
        r"reverse must be a Python bool \(it chooses the code path when tracing\); got a "
        r"traced value",
    ),
    # Wrong kinds and values, NumPy ones included.
    "Checkpointer keep 0": (
        ValueError,
        lambda: checkpoint.Checkpointer("ck", keep=np.int64(0)),
        r"Checkpointer: keep must be an int >= 1; got np\.int64\(0\)",
    ),
    "Checkpointer keep float": (
        TypeError,
        lambda: checkpoint.Checkpointer("ck", keep=1.5),
        r"Checkpointer: keep must be an int >= 1; got 1\.5 \(float\)",
    ),
    "Checkpointer keep bool": (
        TypeError,
        lambda: checkpoint.Checkpointer("ck", keep=np.True_),
        r"Checkpointer: keep must be an int >= 1; got np\.True_",
    ),
    "Checkpointer writer array": (
        TypeError,
        lambda: checkpoint.Checkpointer("ck", writer=np.array([True])),
        r"Checkpointer: writer must be True or False; got array\(\[ True\]\)",
    ),
    "Scan remat float": (
        ValueError,
        lambda: lj.Scan(remat=np.float64(2.0)),
        r"Scan: remat must be False, True or a positive int \(steps per segment\); got "
        r"np\.float64\(2\.0\)",
    ),
    "Scan remat 0": (ValueError, lambda: lj.Scan(remat=np.int64(0)), r"Scan: remat must be"),
    "Scan column_blocks int": (
        ValueError,
        lambda: lj.Scan(column_blocks=np.int64(1)),
        r"Scan: column_blocks must be 'auto', True or False; got np\.int64\(1\)",
    ),
    "Affine chunk float": (
        TypeError,
        lambda: lj.Affine(chunk=np.float32(8)),
        r"Affine: chunk must be an int >= 1",
    ),
    "state_noise negative": (
        ValueError,
        lambda: lj.recurrent(GRU, state_noise=np.float32(-1)),
        r"state_noise must be >= 0 and finite; got np\.float32\(-1\.0\)",
    ),
    "state_noise bool": (
        TypeError,
        lambda: lj.recurrent_dropout(GRU, GRU_PARAMS, XS, state_noise=np.True_),
        r"state_noise must be a real number; got np\.True_",
    ),
    "num_chunks float": (
        TypeError,
        lambda: tbptt.stream_batches(STREAM, STREAM, 2, num_chunks=np.float64(2)),
        r"num_chunks must be an int >= 1; got np\.float64\(2\.0\)",
    ),
    "num_chunks 0": (
        ValueError,
        lambda: tbptt.stream_batches(STREAM, STREAM, 2, num_chunks=np.int64(0)),
        r"num_chunks must be an int >= 1; got np\.int64\(0\)",
    ),
    "mlp of one int": (
        ValueError,
        lambda: lj.mlp(np.int64(3)),
        r"mlp: sizes must be a non-empty sequence of ints; got np\.int64\(3\)",
    ),
    "batch shape str": (
        TypeError,
        lambda: GRU.initial_carry("2"),
        r"batch_shape must be an int >= 0; got '2' \(str\)",
    ),
    "batch shape entry float": (
        TypeError,
        lambda: GRU.initial_carry((2, np.float64(3))),
        r"batch_shape\[1\] must be an int >= 0",
    ),
    "net batch float": (
        TypeError,
        lambda: lj.recurrent(GRU).initial_carry(2.5),
        r"initial_carry: batch must be an int >= 0; got 2\.5",
    ),
    "depth negative": (
        ValueError,
        lambda: diagnostics.param_group_grad_norms({"a": jnp.ones(2)}, depth=-1),
        r"param_group_grad_norms: depth must be an int >= 0; got -1",
    ),
    "one_hot str": (
        TypeError,
        lambda: tasks.temporal_order(KEY, 2, 10, one_hot="yes"),
        r"one_hot must be True or False; got 'yes'",
    ),
    "a task's static size as an array": (
        TypeError,
        lambda: tasks.copy_task(KEY, np.array([2]), 3),
        r"copy_task: batch_size fixes the compiled program, so it must be a hashable value",
    ),
    "valid_fraction str": (
        TypeError,
        lambda: tasks.char_corpus("abcdefgh", valid_fraction="0.1"),
        r"char_corpus: valid_fraction must be a real number; got '0\.1'",
    ),
    "valid_fraction 1": (
        ValueError,
        lambda: tasks.char_corpus("abcdefgh", valid_fraction=np.float64(1.0)),
        r"char_corpus: valid_fraction must lie in \(0, 1\); got 1\.0",
    ),
    "top_k float": (
        TypeError,
        lambda: generate.filter_logits(jnp.zeros((1, 4)), top_k=np.float64(2)),
        r"top_k must be an int >= 1",
    ),
    "restore step float": (
        TypeError,
        lambda: checkpoint.Checkpointer("ck", writer=False).restore(None, step=1.0),
        r"Checkpointer\.restore: step must be an int >= 0; got 1\.0",
    ),
    "shard index out of range": (
        ValueError,
        lambda: distributed.shard_range(4, np.int64(2), 2),
        r"process_index must be an int in \[0, 2\) \(2 processes\); got np\.int64\(2\)",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_clear_error(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the Checkpointer cases create no directory anywhere else
    error, call, pattern = CASES[case]
    assert_clear(error, call, pattern)


# Physical parameters of the task generators may be traced or arrays, so they pass
# `check_parameter` rather than the scalar rule: a str, a bool or a non-finite value
# is refused, and a probability outside [0, 1] (a Bernoulli rate of 2 pulses always).
PARAMETER_CASES = {
    "rk4 dt str": (
        TypeError,
        lambda: tasks.rk4(lambda t, y: -y, jnp.ones(2), "0.1", 3),
        r"rk4: dt must be a real number or array; got '0\.1' \(str\)",
    ),
    "rk4 t0 nan": (
        ValueError,
        lambda: tasks.rk4(lambda t, y: -y, jnp.ones(2), 0.1, 3, t0=float("nan")),
        r"rk4: t0 must be finite; got nan",
    ),
    "pendulum damping bool": (
        TypeError,
        lambda: tasks.pendulum(damping=True),
        r"pendulum: damping must be a real number or array; got True",
    ),
    "lorenz rho None": (
        TypeError,
        lambda: tasks.lorenz(rho=None),
        r"lorenz: rho must be a real number or array; got None",
    ),
    "flip_flop probability 2": (
        ValueError,
        lambda: tasks.flip_flop(KEY, 2, 5, pulse_probability=2.0),
        r"flip_flop: pulse_probability must be finite and in \[0\.0, 1\.0\]; got 2\.0",
    ),
    "pendulum_trajectories dt str": (
        TypeError,
        lambda: tasks.pendulum_trajectories(KEY, 2, 5, dt="0.1"),
        r"pendulum_trajectories: dt must be a real number or array; got '0\.1'",
    ),
    "lorenz_trajectories sigma inf": (
        ValueError,
        lambda: tasks.lorenz_trajectories(KEY, 2, 5, sigma=np.inf),
        r"lorenz_trajectories: sigma must be finite; got inf",
    ),
}


@pytest.mark.parametrize("case", list(PARAMETER_CASES), ids=list(PARAMETER_CASES))
def test_task_parameters_are_checked(case):
    error, call, pattern = PARAMETER_CASES[case]
    assert_clear(error, call, pattern)


def test_task_parameters_may_be_arrays_and_traced():
    # A per-sequence array and a traced dt pass; the traced result equals the eager one.
    f = lambda t, y: -y  # noqa: E731
    y0 = jnp.ones(3)
    eager = tasks.rk4(f, y0, 0.1, 4)
    traced = jax.jit(lambda dt: tasks.rk4(f, y0, dt, 4))(0.1)
    np.testing.assert_allclose(traced, eager, rtol=1e-6)
    np.testing.assert_allclose(eager[-1], np.exp(-0.4) * np.ones(3), rtol=1e-6)  # RK4, h=0.1
    xs, ys = tasks.flip_flop(KEY, 2, 5, pulse_probability=np.float32(0.0))
    assert np.all(np.abs(xs[:, 1:]) == 0) and np.all(ys == ys[:, :1])  # no pulse after t = 0

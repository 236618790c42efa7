"""experiments/parallel_in_time.py --quick runs and writes what it claims."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj

# The parallel-in-time experiment in quick mode: the integration tier (`pytest -m integration`, run by CI as its
# second command), not the default run.
pytestmark = pytest.mark.integration


def load():
    """The script as a module (experiments/ is on pytest's pythonpath, pyproject.toml)."""
    return importlib.import_module("parallel_in_time")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel_in_time")
    result = load().main(["--quick", "--out", str(out)])
    assert (out / "parallel_in_time.png").exists()
    return result


def test_quick_mode_settings(quick):
    cells = {"rnn", "gru", "lstm", "min_gru", "min_lstm"}
    assert set(quick["curves"]["init"]) == set(quick["curves"]["trained"]) == cells
    assert set(quick["curves"]["chaotic"]) == {"rnn"}
    assert len(quick["anchors"]) == 3
    # Training moved the parameters: the loss fell within the quick run's 20 steps.
    for name, loss in quick["train_loss"].items():
        assert np.isfinite(loss["last"]) and loss["last"] < loss["first"], name


def test_newton_within_t_iterations(quick):
    # Each Newton iteration makes one more leading state exact, so within T = 10 iterations
    # (the quick run's cap) the residual reaches 1e-10, at init and after training.
    assert quick["config"]["iters"] == quick["config"]["steps"]
    for setting in ("init", "trained"):
        for name in ("rnn", "gru", "lstm"):
            newton = quick["curves"][setting][name]["newton"]
            assert newton[-1] < 1e-10 and newton[0] > 1e-6, (setting, name)
            assert quick["iterations_to_tol"][setting][name]["newton"] <= 10
            # The same holds for one whole solve at T = 20 (within T iterations).
            solve = quick["iterations_at_length"][setting][name]["newton"]
            assert solve["iterations"] <= 20 and solve["residual"] <= 1e-10, (setting, name)


def test_min_cells_are_solved_in_one_step(quick):
    # Their step is affine with a diagonal Jacobian: one Newton or quasi-Newton step is exact,
    # and the one-pass affine solution equals the sequential scan (an independent reference).
    for setting in ("init", "trained"):
        for name in ("min_gru", "min_lstm"):
            for method in ("newton", "quasi_newton"):
                assert quick["curves"][setting][name][method][0] < 1e-13, (setting, name, method)
                assert quick["iterations_to_tol"][setting][name][method] == 1
            assert quick["affine_pass"][setting][name]["max_abs_vs_scan"] < 1e-13
            solves = quick["iterations_at_length"][setting][name]  # one solve each at T = 20
            assert solves["newton"]["iterations"] == solves["quasi_newton"]["iterations"] == 1
            assert solves["newton"]["residual"] <= 1e-10


SOLVERS = {"newton": lj.Newton, "quasi_newton": lj.QuasiNewton, "elk": lj.ELK}


@pytest.mark.parametrize("method", ["newton", "elk"])
def test_curve_restarts_equal_whole_solves(method):
    # `curve` restarts the solver from its last iterate once per iteration; its k-th value
    # must equal the residual of one solve of k iterations.
    module = load()
    cell = lj.lstm(3, dtype=jnp.float64)
    params = cell.init(jax.random.PRNGKey(0), 2)
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 7, 2), jnp.float64)
    traced = module.curve(cell, params, xs, method, 3)
    for k, value in enumerate(traced, start=1):
        _, _, info = lj.unroll_parallel(
            cell, params, xs, method=SOLVERS[method](max_iters=k, tol=1e-300)
        )
        assert value == pytest.approx(float(info.residual), rel=1e-9, abs=1e-15), k

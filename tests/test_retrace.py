"""Retrace guards: the loops users write compile once.

A jitted `unroll` called again with an equal cell (built separately) and the same
shapes, and a train step called again by hand or by `fit`, must not trace again:
a retrace per call would multiply the cost of every training loop (and of this
suite). Traces are counted with a Python side effect, which runs only while JAX
traces; `chex.assert_max_traces` guards the jitted unroll.
"""

import chex
import jax
import jax.numpy as jnp
import optax

import lstmjax as lj
from lstmjax import losses, train

B, T, I, H = 4, 6, 3, 5


def test_jitted_unroll_traces_once_for_equal_cells_and_shapes():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(cell, params, xs):
        return lj.unroll(cell, params, xs, method=lj.Scan(remat=True))[0]

    params = lj.lstm(H).init(jax.random.key(0), I)
    for seed in range(3):  # new cells, new inputs, same configuration and shapes
        xs = jax.random.normal(jax.random.key(seed), (B, T, I))
        run(lj.lstm(H), params, xs)
    chex.clear_trace_counter()


def test_train_step_and_fit_trace_once():
    traces = []
    cell = lj.gru(H)

    def apply_fn(params, xs):
        traces.append(1)  # runs only while tracing
        return lj.unroll(cell, params, xs)[0][:, -1]

    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    state = train.init_state(cell.init(jax.random.key(0), I), optimizer)
    step = train.make_train_step(apply_fn, losses.mse, optimizer)

    def batch(n):
        k = jax.random.fold_in(jax.random.key(1), n)
        return jax.random.normal(k, (B, T, I)), jnp.zeros((B, H))

    for n in range(3):
        state, _ = step(state, batch(n))
    after_steps = len(traces)
    assert after_steps >= 1
    state, _ = train.fit(step, state, batch, num_steps=5, logging=train.Logging(quiet=True))
    assert len(traces) == after_steps, f"fit retraced the step: {len(traces)} traces"


class Compilations:
    """Counts XLA compilations while active (JAX reports each through jax.monitoring)."""

    def __init__(self):
        self.count = 0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **_):
        if self.active and event == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def __enter__(self):
        self.count, self.active = 0, True
        return self

    def __exit__(self, *exc):
        self.active = False


COMPILATIONS = Compilations()


def test_diagnostics_and_dynamics_compile_once_for_equal_cells_and_shapes():
    # Each was compiled again on every eager call (0.5 to 2.3 s for a 3-unit LSTM).
    params = lj.lstm(3).init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 7, 2))
    starts = jax.random.normal(jax.random.key(2), (4, 6))
    vectors = jnp.ones((6, 2))

    def loss(ys):
        return jnp.sum(ys[:, -1] ** 2, axis=-1)

    calls = {
        "carry_grad_norms": lambda c, x: lj.diagnostics.carry_grad_norms(c, params, x, loss),
        "jacobian_products": lambda c, x: lj.diagnostics.jacobian_products(c, params, x, vectors),
        "jacobian_norms": lambda c, x: lj.diagnostics.jacobian_norms(c, params, x),
        "lyapunov_spectrum": lambda c, x: lj.dynamics.lyapunov_spectrum(c, params, x),
        "fixed_points": lambda c, x: lj.dynamics.fixed_points(
            c, params, x[0, 0], starts=starts, steps=5
        ),
    }
    other_xs = xs + 1.0  # new inputs of the same shapes (made outside the count)
    for name, call in calls.items():
        jax.block_until_ready(call(lj.lstm(3), xs))
        with COMPILATIONS as second:  # a new, equal cell
            jax.block_until_ready(call(lj.lstm(3), other_xs))
        assert second.count == 0, f"{name} compiled {second.count} programs again"

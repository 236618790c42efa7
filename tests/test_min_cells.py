"""minGRU and minLSTM: their equations by hand, the exact parallel pass, finite differences."""

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax as lj

H, I = 4, 3


def g(v):
    return np.where(v >= 0, v + 0.5, 1 / (1 + np.exp(-v)))


def sig(v):
    return 1 / (1 + np.exp(-v))


def numpy_min_gru(p, xs):
    w, b = np.asarray(p.w_x), np.asarray(p.b)
    h, out = np.zeros((xs.shape[0], H)), []
    for t in range(xs.shape[1]):
        v = xs[:, t] @ w + b
        z = sig(v[:, :H])
        h = (1 - z) * h + z * g(v[:, H:])
        out.append(h)
    return np.stack(out, 1)


def numpy_min_lstm(p, xs):
    w, b = np.asarray(p.w_x), np.asarray(p.b)
    h, out = np.zeros((xs.shape[0], H)), []
    for t in range(xs.shape[1]):
        v = xs[:, t] @ w + b
        f, i = sig(v[:, :H]), sig(v[:, H : 2 * H])
        h = f / (f + i) * h + i / (f + i) * g(v[:, 2 * H :])
        out.append(h)
    return np.stack(out, 1)


CELLS = {"min_gru": (lj.min_gru, numpy_min_gru), "min_lstm": (lj.min_lstm, numpy_min_lstm)}


def setup(name, T=9):
    cell = CELLS[name][0](H, dtype=jnp.float64, bias_init=jax.nn.initializers.normal(1.0))
    params = cell.init(jax.random.PRNGKey(0), I)
    xs = 2.0 * jax.random.normal(jax.random.PRNGKey(1), (2, T, I), jnp.float64)
    return cell, params, xs


@pytest.mark.parametrize("name", sorted(CELLS))
def test_step_scan_and_parallel_pass_equal_the_numpy_equations(name):
    cell, params, xs = setup(name)
    want = CELLS[name][1](params, np.asarray(xs))
    h = cell.initial_carry((2,))
    steps = []
    for t in range(xs.shape[1]):
        h, y = cell.step(params, h, xs[:, t])
        steps.append(y)
    np.testing.assert_allclose(np.stack(steps, 1), want, rtol=1e-12)
    for method in ("scan", "auto", "affine"):
        np.testing.assert_allclose(lj.unroll(cell, params, xs, method=method)[0], want, rtol=1e-12)
    for algorithm in ("blocked", "associative", "sequential", "log"):
        ys = lj.unroll(cell, params, xs, method=lj.Affine(algorithm=algorithm))[0]
        np.testing.assert_allclose(ys, want, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_parallel_pass_with_lengths_resets_reverse_equals_the_scan(name):
    cell, params, xs = setup(name)
    kw = dict(lengths=jnp.array([9, 4]), resets=jnp.zeros((2, 9), bool).at[0, 3].set(True))
    for reverse in (False, True):
        got = lj.unroll(cell, params, xs, method="affine", reverse=reverse, **kw)
        want = lj.unroll(cell, params, xs, method="scan", reverse=reverse, **kw)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradient_of_the_parallel_pass_equals_finite_differences(name):
    cell, params, xs = setup(name, T=6)

    def loss(p):
        return jnp.sum(jnp.sin(lj.unroll(cell, p, xs, lengths=jnp.array([6, 3]))[0]))

    grad = jax.grad(loss)(params)
    eps = 1e-6
    for field in ("w_x", "b"):
        a = getattr(params, field)
        v = jax.random.normal(jax.random.PRNGKey(7), a.shape, a.dtype)
        fd = (loss(params._replace(**{field: a + eps * v})) -
              loss(params._replace(**{field: a - eps * v}))) / (2 * eps)  # fmt: skip
        np.testing.assert_allclose(jnp.vdot(getattr(grad, field), v), fd, rtol=1e-7)


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("chunk", [4, 5, 23])
def test_chunked_pass_and_its_derivatives_equal_the_scan(name, chunk):
    # T = 23 in chunks of 4 (5 chunks, a tail of 3), of 5 (4 chunks, a tail of 3)
    # and 23 (one chunk): values, reverse-mode and forward-mode derivatives
    # against the sequential scan, with lengths, a reset and reverse.
    cell, params, xs = setup(name, T=23)
    kw = dict(lengths=jnp.array([23, 11]), resets=jnp.zeros((2, 23), bool).at[0, 9].set(True))
    carry = jnp.full((2, H), 0.3)

    @functools.partial(jax.jit, static_argnums=3)  # values, gradient and JVP in one program
    def derivatives(p, x, c, method):
        def run(p, x, c):
            ys, last = lj.unroll(cell, p, x, c, reverse=True, method=method, **kw)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(last**2)

        tangent = jax.tree.map(lambda v: jnp.ones_like(v) * 0.1, p)
        values = lj.unroll(cell, p, x, c, reverse=True, method=method, **kw)
        grads = jax.grad(run, argnums=(0, 1, 2))(p, x, c)
        return values, grads, jax.jvp(lambda p: run(p, x, c), (p,), (tangent,))[1]

    got, g_got, jvp_got = derivatives(params, xs, carry, lj.Affine(chunk=chunk))
    want, g_want, jvp_want = derivatives(params, xs, carry, lj.Scan())
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jvp_got, jvp_want, rtol=1e-10)


@dataclasses.dataclass(frozen=True)
class TanhOutput(lj.Cell):
    """A user cell: `inner`'s step (affine in the carry), read out as y = tanh(2h)."""

    inner: lj.Cell
    linear_in_carry: ClassVar[bool] = True

    @property
    def hidden_size(self):
        return self.inner.hidden_size

    @property
    def output_size(self):
        return self.inner.output_size

    def init(self, key, input_size):
        return self.inner.init(key, input_size)

    def initial_carry(self, batch_shape=()):
        return self.inner.initial_carry(batch_shape)

    def project(self, params, x):
        return self.inner.project(params, x)

    def recur(self, params, h, px):
        h, _ = self.inner.recur(params, h, px)
        return h, self.output(h)

    def output(self, h):
        return jnp.tanh(2.0 * h)


def test_a_linear_cell_whose_output_is_not_its_carry_takes_the_output_pass():
    # A user cell affine in its carry whose output differs from it (y = tanh(2h)):
    # the exact pass must evaluate `recur` for the outputs, not return the states.
    base, params, xs = setup("min_gru", T=13)
    cell = TanhOutput(base)
    lengths = jnp.array([13, 6])
    got = lj.unroll(cell, params, xs, method=lj.Affine(chunk=4), lengths=lengths)
    want = lj.unroll(cell, params, xs, method="scan", lengths=lengths)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)

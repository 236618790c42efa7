"""`lstmjax.diagnostics` against direct `jax.jacrev` computations, in float64.

The references split the sequence at step t with `lstmjax.unroll` (a
different code path from the diagnostics' own scan): the prefix gives
carry_t, and the loss (or the final carry) is written as an explicit function
of carry_t by unrolling the suffix from it. `jax.jacrev` of that function is
the reference; agreement is asked to 1e-10 relative.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from cell_zoo import CELL_FACTORIES, CELL_IDS, INPUT_SIZE

import lstmjax as lj
from lstmjax import diagnostics, train

B, T = 2, 5
RTOL = 1e-10


def setup(factory, seed=0):
    """A float64 cell, params moved off their initial values (peepholes included), inputs."""
    cell = factory(jnp.float64)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = cell.init(k1, INPUT_SIZE)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(k2, len(leaves))
    leaves = [
        p + 0.3 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys, strict=True)
    ]
    xs = jax.random.normal(k3, (B, T, INPUT_SIZE), jnp.float64)
    return cell, jax.tree_util.tree_unflatten(treedef, leaves), xs


def output(carry):
    # Written out here rather than taken from the module under test: the LSTM
    # outputs h, every other lstmjax cell outputs its whole carry.
    return carry.h if isinstance(carry, lj.LSTMCarry) else carry


def make_loss(cell, seed=1):
    """Per-example loss on every output (linear) plus the last one (quadratic)."""
    v = jax.random.normal(jax.random.PRNGKey(seed), (T, cell.output_size), jnp.float64)

    def loss_fn(ys):  # [B, T, O] -> [B]
        return jnp.sum(ys * v[None], axis=(1, 2)) + 0.5 * jnp.sum(jnp.square(ys[:, -1]), axis=1)

    return loss_fn


def split_at(cell, params, xs, t):
    """Split the run at step t (t may be traced, so one compilation serves all t).

    Returns carry_t, from `unroll` over the prefix (with lengths t + 1, after
    which the carry stops changing), and `rest(c) -> (ys [B, T, O], last carry)`:
    the outputs of the prefix before t, y_t read from `c`, and the outputs of
    the suffix unrolled from `c` (with lengths T - 1 - t).
    """
    full = lambda n: jnp.full((B,), n, jnp.int32)  # noqa: E731
    ys_prefix, carry_t = lj.unroll(cell, params, xs, lengths=full(t + 1))
    xs_suffix = jnp.roll(xs, -(t + 1), axis=1)  # step t + 1 first

    def rest(c):
        ys_suffix, last = lj.unroll(cell, params, xs_suffix, carry=c, lengths=full(T - 1 - t))
        ys_suffix = jnp.roll(ys_suffix, t + 1, axis=1)  # back at steps t + 1 .. T - 1
        step = jnp.arange(T)[None, :, None]
        ys = jnp.where(step < t, ys_prefix, jnp.where(step == t, output(c)[:, None], ys_suffix))
        return ys, last

    return carry_t, rest


@partial(jax.jit, static_argnums=(0, 3))
def reference_carry_grads(cell, params, xs, loss_fn):
    """dL_b / d carry_t for every t and b, by jacrev of the loss as a function of carry_t.

    Returns the carry's structure with leaves `[T, B, D]`.
    """
    rows = jnp.arange(B)

    def at(t):
        carry_t, rest = split_at(cell, params, xs, t)
        jac = jax.jacrev(lambda c: loss_fn(rest(c)[0]))(carry_t)  # leaves [B, B, D]
        return jax.tree_util.tree_map(lambda j: j[rows, rows], jac)  # example b's own row

    return jax.vmap(at)(jnp.arange(T))


@pytest.mark.parametrize("factory", CELL_FACTORIES, ids=CELL_IDS)
def test_carry_grad_norms_match_jacrev(factory):
    cell, params, xs = setup(factory)
    loss_fn = make_loss(cell)
    got = jax.jit(diagnostics.carry_grad_norms, static_argnums=(0, 3))(cell, params, xs, loss_fn)
    assert got.combined.shape == (B, T) and got.mean.shape == (T,)
    ref = jax.tree_util.tree_map(np.asarray, reference_carry_grads(cell, params, xs, loss_fn))
    ref_fields = jax.tree_util.tree_map(lambda g: np.linalg.norm(g, axis=-1).T, ref)  # [B, T]
    got_leaves, ref_leaves = (jax.tree_util.tree_leaves(t) for t in (got.fields, ref_fields))
    for g, r in zip(got_leaves, ref_leaves, strict=True):
        np.testing.assert_allclose(g, r, rtol=RTOL)
    flat = np.concatenate(jax.tree_util.tree_leaves(ref), axis=-1)  # [T, B, D_total]
    np.testing.assert_allclose(got.combined, np.linalg.norm(flat, axis=-1).T, rtol=RTOL)
    np.testing.assert_allclose(got.mean, np.mean(got.combined, axis=0), rtol=RTOL)


def test_lstm_fields_are_h_and_c():
    cell, params, xs = setup(lambda dtype: lj.lstm(5, dtype=dtype))
    got = diagnostics.carry_grad_norms(cell, params, xs, make_loss(cell))
    assert isinstance(got.fields, lj.LSTMCarry) and isinstance(got.fields_mean, lj.LSTMCarry)
    # The loss reads h only, so at the last step c has no gradient; earlier it has.
    np.testing.assert_array_equal(got.fields.c[:, -1], 0.0)
    assert np.all(np.asarray(got.fields.c[:, :-1]) > 0)
    np.testing.assert_allclose(got.combined, np.hypot(got.fields.h, got.fields.c), rtol=RTOL)


def test_carry_grad_norms_jit_matches_eager():
    cell, params, xs = setup(lambda dtype: lj.gru(5, dtype=dtype))
    loss_fn = make_loss(cell)
    eager = diagnostics.carry_grad_norms(cell, params, xs, loss_fn)
    jitted = jax.jit(diagnostics.carry_grad_norms, static_argnums=(0, 3))(cell, params, xs, loss_fn)
    np.testing.assert_allclose(jitted.combined, eager.combined, rtol=1e-12)


@partial(jax.jit, static_argnums=0)
def reference_jacobians(cell, params, xs):
    """d carry_{T-1} / d carry_t for every t by jacrev, `[T, B, D, B, D]` (carry flattened)."""
    _, template = lj.unroll(cell, params, xs[:, :1])
    leaves, treedef = jax.tree_util.tree_flatten(template)
    cuts = list(np.cumsum([leaf.shape[-1] for leaf in leaves])[:-1])

    def unflatten(v):
        return jax.tree_util.tree_unflatten(treedef, jnp.split(v, cuts, axis=-1))

    def flatten(c):
        return jnp.concatenate(jax.tree_util.tree_leaves(c), axis=-1)

    def at(t):
        carry_t, rest = split_at(cell, params, xs, t)
        return jax.jacrev(lambda v: flatten(rest(unflatten(v))[1]))(flatten(carry_t))

    return jax.vmap(at)(jnp.arange(T))


# A subset keeps the run short: each carry type and step structure once (the
# peephole LSTM exercises every path of the plain one).
JACOBIAN_CELLS = ["rnn", "lstm_peephole", "gru", "jordan"]


@pytest.mark.parametrize(
    "factory", [CELL_FACTORIES[CELL_IDS.index(n)] for n in JACOBIAN_CELLS], ids=JACOBIAN_CELLS
)
def test_jacobian_norms_match_jacrev(factory):
    cell, params, xs = setup(factory)
    got = np.asarray(jax.jit(diagnostics.jacobian_norms, static_argnums=0)(cell, params, xs))
    assert got.shape == (B, T)
    jac = np.asarray(reference_jacobians(cell, params, xs))
    for t in range(T):
        for b in range(B):
            largest = np.linalg.svd(jac[t, b, :, b, :], compute_uv=False)[0]  # NumPy's SVD
            np.testing.assert_allclose(got[b, t], largest, rtol=RTOL)


def test_linear_rnn_jacobian_norm_is_rho_to_the_k():
    """W = rho * Q with Q orthogonal: ||(W^T)^k|| = rho^k exactly (a hand formula)."""
    H, rho = 6, 1.3
    cell = lj.rnn(H, activation=lambda v: v, dtype=jnp.float64)
    params = cell.init(jax.random.PRNGKey(0), 2)
    q = jax.nn.initializers.orthogonal()(jax.random.PRNGKey(1), (H, H), jnp.float64)
    params = params._replace(w_h=rho * q)
    xs = jax.random.normal(jax.random.PRNGKey(2), (1, 30, 2), jnp.float64)
    got = np.asarray(diagnostics.jacobian_norms(cell, params, xs))[0, ::-1]
    np.testing.assert_allclose(got, rho ** np.arange(30), rtol=1e-12)


def test_spectral_norm_and_radius():
    w = np.random.default_rng(0).normal(size=(7, 5))
    np.testing.assert_allclose(
        diagnostics.spectral_norm(jnp.asarray(w)), np.linalg.svd(w, compute_uv=False)[0], rtol=1e-12
    )
    # A non-normal matrix: the radius (0.5) is far below the norm (about 10).
    m = np.array([[0.5, 10.0], [0.0, -0.3]])
    np.testing.assert_allclose(diagnostics.spectral_radius(jnp.asarray(m)), 0.5, rtol=1e-12)
    np.testing.assert_allclose(
        diagnostics.spectral_norm(jnp.asarray(m)), np.linalg.svd(m, compute_uv=False)[0], rtol=1e-12
    )
    # A scaled rotation has complex eigenvalues of modulus rho.
    a, rho = 0.7, 1.2
    rot = rho * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    np.testing.assert_allclose(diagnostics.spectral_radius(jnp.asarray(rot)), rho, rtol=1e-12)
    with pytest.raises(ValueError, match="square matrix"):
        diagnostics.spectral_radius(jnp.ones((2, 3)))


def test_param_group_grad_norms_lstm_and_stack():
    params = lj.lstm(4, dtype=jnp.float64).init(jax.random.PRNGKey(0), 3)
    norms = diagnostics.param_group_grad_norms(params)
    assert list(norms) == ["w_x", "w_h", "b"]  # peephole=None has no arrays
    for name in norms:
        np.testing.assert_allclose(norms[name], np.linalg.norm(np.ravel(getattr(params, name))))

    net = lj.recurrent(lj.gru(4, dtype=jnp.float64), num_layers=2, bidirectional=True)
    stack = net.init(jax.random.PRNGKey(1), 3)
    by_layer = diagnostics.param_group_grad_norms(stack)
    assert list(by_layer) == ["0", "1"]
    per_array = diagnostics.param_group_grad_norms(stack, depth=None)
    assert "1/backward/w_h" in per_array and "0/forward/b_hn" in per_array
    np.testing.assert_allclose(by_layer["1"], optax.tree.norm(stack[1]), rtol=1e-12)
    from_training = train.group_norms(stack)  # the training metrics' own grouping
    assert list(from_training) == list(by_layer)
    for name, value in from_training.items():
        np.testing.assert_allclose(by_layer[name], value, rtol=1e-12)
    total = np.sqrt(sum(float(v) ** 2 for v in per_array.values()))
    np.testing.assert_allclose(total, optax.tree.norm(stack), rtol=1e-12)


def test_param_group_grad_norms_dict_of_models():
    mlp = lj.mlp([4, 2], dtype=jnp.float64).init(jax.random.PRNGKey(0), 3)
    tree = {"mlp": mlp, "scale": jnp.asarray([3.0, 4.0])}
    np.testing.assert_allclose(diagnostics.param_group_grad_norms(tree)["scale"], 5.0)
    deep = diagnostics.param_group_grad_norms(tree, depth=3)
    assert set(deep) == {"mlp/layers/0", "mlp/layers/1", "scale"}


def test_bad_inputs_say_what_was_expected():
    cell, params, xs = setup(lambda dtype: lj.rnn(5, dtype=dtype))
    with pytest.raises(ValueError, match="one loss per example"):
        diagnostics.carry_grad_norms(cell, params, xs, lambda ys: jnp.sum(ys))
    with pytest.raises(ValueError, match=r"\[batch, time, features\]"):
        diagnostics.jacobian_norms(cell, params, xs[0])

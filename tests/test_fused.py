"""`lj.Fused`: the compiled CPU kernels give what the scan gives, and fall back clearly.

Reference: `lj.unroll(..., method=lj.Scan())`, the pure-JAX scan (itself
checked against finite differences and a hand-written BPTT in
test_bptt.py and test_custom_vjp.py). The kernel is separate code (C++: its
own matrix kernel, activations and backward pass), so agreement checks both.
Tolerances, relative to the largest magnitude of each compared array:
float32 2e-5 (the two round differently: the kernel's exp/tanh and
summation order; measured up to 2e-6), float64 1e-12 (measured below 4e-15).

The kernel tests skip, saying why, where the extension was not built; the
fallback and option tests run either way.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hostile import assert_clear

import lstmjax as lj
from lstmjax import _fused, _fused_kernel

_, WHY_NOT = _fused_kernel.load()
needs_kernel = pytest.mark.skipif(bool(WHY_NOT), reason=f"fused kernel unavailable: {WHY_NOT}")

# (B, T, I, H): odd sizes (the kernel's edge paths), sizes that fill its vector tiles, and a
# sequence long enough for the backward pass to run in several blocks of steps (~1 MB each).
SHAPES = {"odd": (5, 6, 3, 9), "tiles": (8, 4, 16, 32), "blocks": (8, 130, 4, 64)}
TOL = {"float32": 2e-5, "float64": 1e-12}
CELLS = {
    "lstm": lj.lstm,
    "gru": lj.gru,
    "gru_reset_before": functools.partial(lj.gru, reset_after=False),
    "lstm_peephole": functools.partial(lj.lstm, peephole=True),
}


def target(cell_name: str) -> str:
    """The FFI targets' cell name (both GRU forms share the GRU's targets)."""
    return cell_name.split("_")[0]


@functools.cache
def case(cell_name: str, dtype: str, shape: str):
    """Cell, params (non-trivial biases), xs [B, T, I] and an initial carry.

    Built with one jitted init and NumPy data: eager JAX ops would compile one
    program each.
    """
    B, T, I, H = SHAPES[shape]
    cell = CELLS[cell_name](H, dtype=jnp.dtype(dtype))
    params = jax.jit(cell.init, static_argnums=1)(jax.random.PRNGKey(T), I)
    rng = np.random.default_rng(len(cell_name) + T)
    params = params._replace(b=params.b + 0.3 * rng.standard_normal(params.b.shape).astype(dtype))
    if cell_name == "gru":
        params = params._replace(b_hn=jnp.asarray(0.3 * rng.standard_normal(H), dtype))
    if cell_name == "lstm_peephole":  # non-zero peepholes (they start at zero)
        params = params._replace(peephole=jnp.asarray(0.5 * rng.standard_normal((3, H)), dtype))
    xs = jnp.asarray(rng.standard_normal((B, T, I)), dtype)
    h0 = 0.5 * rng.standard_normal((B, H))
    c0 = np.tanh(2.0 * h0[:, ::-1])
    h0, c0 = jnp.asarray(h0, dtype), jnp.asarray(c0, dtype)
    carry = lj.LSTMCarry(h0, c0) if cell_name.startswith("lstm") else h0
    return cell, params, xs, carry


def close(got, want, dtype: str):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = float(jnp.max(jnp.abs(w))) if w.size else 0.0
        np.testing.assert_allclose(g, w, rtol=0, atol=TOL[dtype] * max(scale, 1e-30))


@functools.cache
def values_and_grads(method):
    """Jitted: outputs, final carry, and gradients of a loss on ys and on every carry leaf."""

    def loss(params, xs, carry, cell):
        ys, last = lj.unroll(cell, params, xs, carry, method=method)
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        leaves = jax.tree_util.tree_leaves(last)
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(a) * a) for a in leaves), (ys, last)

    grad = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)
    return jax.jit(grad, static_argnums=3)


@functools.cache
def many_to_one_grad(method):
    """Jitted gradient in the params only of a loss on the last output (symbolic zeros)."""

    def loss(params, xs, cell):
        last = lj.unroll(cell, params, xs, method=method)[1]
        h = last.h if isinstance(last, lj.LSTMCarry) else last
        return jnp.sum(jnp.tanh(h))

    return jax.jit(jax.grad(loss), static_argnums=2)


FUSED = lj.Fused()
FUSED_TWO_PARTS = lj.Fused(threads=2)
SCAN = lj.Scan()


@needs_kernel
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_values_and_gradients_match_the_scan(cell_name, dtype, shape):
    cell, params, xs, carry = case(cell_name, dtype, shape)
    method = FUSED if shape == "odd" else FUSED_TWO_PARTS  # 8 sequences: two parts of 4
    got, (got_ys, got_last) = values_and_grads(method)(params, xs, carry, cell)
    want, (want_ys, want_last) = values_and_grads(SCAN)(params, xs, carry, cell)
    close((got_ys, got_last), (want_ys, want_last), dtype)
    close(got, want, dtype)


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_many_to_one_gradient_matches_the_scan(cell_name):
    """The training loss of the benchmark: no cotangent for ys, none wanted for xs."""
    cell, params, xs, _ = case(cell_name, "float32", "tiles")
    got = many_to_one_grad(FUSED)(params, xs, cell)
    want = many_to_one_grad(SCAN)(params, xs, cell)
    close(got, want, "float32")


@functools.cache
def masked_values_and_grads(method):
    """Jitted: outputs, carry and gradients (params, xs, carry) with lengths, a mask, reverse."""

    def loss(params, xs, carry, lengths, mask, cell):
        ys, last = lj.unroll(
            cell, params, xs, carry, lengths=lengths, mask=mask, reverse=True, method=method
        )
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        leaves = jax.tree_util.tree_leaves(last)
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(a) * a) for a in leaves), (ys, last)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=5)


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_lengths_and_mask_match_the_scan(cell_name):
    """Masked steps keep the carry and output zero, as in the scan (values and gradients)."""
    cell, params, xs, carry = case(cell_name, "float64", "odd")
    lengths = jnp.array([6, 3, 0, 1, 5])
    mask = jnp.ones(xs.shape[:2], bool).at[0, 1].set(False).at[4, 2:4].set(False)
    got = masked_values_and_grads(FUSED)(params, xs, carry, lengths, mask, cell)
    want = masked_values_and_grads(SCAN)(params, xs, carry, lengths, mask, cell)
    close(got, want, "float64")


@functools.cache
def reset_values_and_grads(method, reverse: bool):
    """Jitted: outputs, carry and gradients (params, xs, carry) with resets, lengths, a mask."""

    def loss(params, xs, carry, lengths, mask, resets, cell):
        ys, last = lj.unroll(
            cell, params, xs, carry, lengths=lengths, mask=mask, resets=resets, reverse=reverse,
            method=method,
        )  # fmt: skip
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        leaves = jax.tree_util.tree_leaves(last)
        return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(a) * a) for a in leaves), (ys, last)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=6)


def reset_pattern(B: int, T: int, seed: int):
    """Resets about one step in five, and the cases at the edges: a reset at step 0, two in a
    row, a reset on a masked step, one on a padding step, a sequence that resets at every
    step; with lengths and a mask."""
    rng = np.random.default_rng(seed)
    resets = rng.random((B, T)) < 0.2
    resets[0, 0] = resets[1, 2:4] = True
    resets[-1] = True
    lengths = np.full(B, T)
    lengths[1], lengths[2] = T // 2, 0
    mask = np.ones((B, T), bool)
    mask[1, 2] = mask[3, 1:3] = False
    resets[3, 2] = True  # on a masked step
    resets[1, T - 1] = True  # past sequence 1's length
    return jnp.asarray(resets), jnp.asarray(lengths), jnp.asarray(mask)


@needs_kernel
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(("dtype", "shape"), [("float64", "odd"), ("float32", "blocks")])
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_resets_match_the_scan(cell_name, dtype, shape, reverse):
    """A reset restarts the sequence from its initial carry, in values and gradients (the
    carry's gradient there reaches the initial carry, and the recurrent weights see the
    initial h as that step's previous state), alone and with lengths, a mask and reverse;
    "blocks" runs the backward pass in several blocks of steps, over two parts of the batch."""
    cell, params, xs, carry = case(cell_name, dtype, shape)
    resets, lengths, mask = reset_pattern(*xs.shape[:2], seed=xs.shape[1])
    method = FUSED if shape == "odd" else FUSED_TWO_PARTS
    for args in ((None, None, resets), (lengths, mask, resets)):
        got = reset_values_and_grads(method, reverse)(params, xs, carry, *args, cell)
        want = reset_values_and_grads(SCAN, reverse)(params, xs, carry, *args, cell)
        close(got, want, dtype)
    run = lambda p, x: lj.unroll(cell, p, x, carry, resets=resets, reverse=reverse)[0]  # noqa: E731
    assert kernels_in(run, params, xs) == [
        f"lstmjax_{target(cell_name)}_forward"
    ]  # "auto": the kernel


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_resets_are_a_new_sequence_from_the_initial_carry(cell_name):
    """Independent of the scan: a batch with a reset at step 4 gives, from step 4 on, what a
    separate call on the rest of the sequence from the same initial carry gives."""
    cell, params, xs, carry = case(cell_name, "float64", "odd")
    resets = jnp.zeros(xs.shape[:2], bool).at[:, 4].set(True)
    ys, last = lj.unroll(cell, params, xs, carry, resets=resets, method=FUSED)
    ys_rest, last_rest = lj.unroll(cell, params, xs[:, 4:], carry, method=FUSED)
    close((ys[:, 4:], last), (ys_rest, last_rest), "float64")
    close(ys[:, :4], lj.unroll(cell, params, xs[:, :4], carry, method=FUSED)[0], "float64")


@needs_kernel
def test_vmap_with_resets_matches_the_scan():
    cell, params, xs, carry = case("gru", "float64", "odd")
    resets, lengths, _ = reset_pattern(*xs.shape[:2], seed=7)
    members = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a, -a]), params)

    def loss(method):
        def f(p):
            ys, last = lj.unroll(cell, p, xs, carry, lengths=lengths, resets=resets, method=method)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(last**2)

        return jax.jit(jax.vmap(jax.value_and_grad(f)))

    close(loss(FUSED)(members), loss(SCAN)(members), "float64")


@needs_kernel
def test_reverse_and_time_major_match_the_scan():
    cell, params, xs, carry = case("lstm", "float64", "odd")
    xs_t = jnp.swapaxes(xs, 0, 1)
    for kwargs in ({"reverse": True}, {"time_major": True}):
        x = xs_t if kwargs.get("time_major") else xs
        got = lj.unroll(cell, params, x, carry, method=FUSED, **kwargs)
        want = lj.unroll(cell, params, x, carry, method=SCAN, **kwargs)
        close(got, want, "float64")


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_empty_sequence_returns_the_initial_carry(cell_name):
    cell, params, xs, carry = case(cell_name, "float64", "odd")
    got, grads = jax.value_and_grad(
        lambda p, c: jnp.sum(jax.tree_util.tree_leaves(lj.unroll(cell, p, xs[:, :0], c,
                                                                 method=FUSED)[1])[0]),
        argnums=(0, 1),
    )(params, carry)  # fmt: skip
    leaf = jax.tree_util.tree_leaves(carry)[0]
    assert float(got) == float(jnp.sum(leaf))
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(grads[0]))
    np.testing.assert_array_equal(jax.tree_util.tree_leaves(grads[1])[0], jnp.ones_like(leaf))


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_nan_input_spreads_as_in_the_scan(cell_name):
    """A NaN at one step of one sequence: NaN from there on in that sequence only."""
    cell, params, xs, carry = case(cell_name, "float32", "odd")
    xs = xs.at[1, 2, 0].set(jnp.nan)
    got, _ = lj.unroll(cell, params, xs, carry, method=FUSED)
    want, _ = lj.unroll(cell, params, xs, carry, method=SCAN)
    np.testing.assert_array_equal(jnp.isnan(got), jnp.isnan(want))
    assert bool(jnp.all(jnp.isnan(got[1, 2:])))
    finite = ~jnp.isnan(want)
    close(got[finite], want[finite], "float32")


@needs_kernel
def test_vmap_over_an_ensemble_matches_the_scan():
    cell, params, xs, carry = case("lstm", "float32", "odd")
    ensemble = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a, -a]), params)

    def loss(method):
        return lambda p: jnp.sum(lj.unroll(cell, p, xs, carry, method=method)[0] ** 2)

    got = jax.vmap(jax.value_and_grad(loss(FUSED)))(ensemble)
    want = jax.vmap(jax.value_and_grad(loss(SCAN)))(ensemble)
    close(got, want, "float32")


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_vmap_runs_members_inside_one_kernel_call_and_matches_the_scan(cell_name):
    """Under vmap the kernels take the members as leading axes (no XLA loop around them):
    members with their own weights, members sharing weights (data batched), and two nested
    vmaps, with lengths; values and gradients equal the scan's."""
    cell, params, xs, carry = case(cell_name, "float64", "odd")
    lengths = jnp.array([6, 3, 0, 1, 5])

    def loss(method):
        def f(p, x):
            ys, last = lj.unroll(cell, p, x, carry, lengths=lengths, method=method)
            leaves = jax.tree_util.tree_leaves(last)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a**2) for a in leaves)

        return jax.value_and_grad(f, argnums=(0, 1))

    members = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a, -a]), params)
    data = jnp.stack([xs, 2 * xs, -xs])
    for in_axes, args in (
        ((0, None), (members, xs)),  # an ensemble: own weights, shared data
        ((None, 0), (params, data)),  # shared weights, batched data
        ((0, 0), (members, data)),
    ):
        run = lambda m, ia=in_axes, a=args: jax.jit(jax.vmap(loss(m), ia))(*a)  # noqa: E731
        close(run(FUSED), run(SCAN), "float64")
    nested = lambda m: jax.vmap(jax.vmap(loss(m), (0, None)), (None, 0))(members, data)  # noqa: E731
    close(nested(FUSED), nested(SCAN), "float64")

    program = jax.jit(jax.vmap(loss(FUSED), (0, 0))).lower(members, data).as_text()
    assert "stablehlo.while" not in program
    assert kernels_in(jax.vmap(loss(FUSED), (0, 0)), members, data) == [
        f"lstmjax_{target(cell_name)}_forward_train",
        f"lstmjax_{target(cell_name)}_backward",
    ]


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_forward_mode_hidden_by_jit_matches_the_scan(cell_name):
    """`jax.jvp`/`jax.jacfwd` of a jitted function: unroll's door cannot see the tangents, so
    the kernel's own forward-mode rule runs (no fallback warning); its tangents equal the
    scan's, with lengths, and under vmap."""
    cell, params, xs, carry = case(cell_name, "float64", "odd")
    lengths = jnp.array([6, 3, 0, 1, 5])

    def fn(method):
        def run(params, xs):
            ys, last = lj.unroll(cell, params, xs, carry, lengths=lengths, method=method)
            return ys, last

        return jax.jit(run)

    tangent_xs = jnp.cos(xs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = jax.jvp(lambda x: fn(FUSED)(params, x), (xs,), (tangent_xs,))
        got_jac = jax.jacfwd(lambda p: fn(FUSED)(p, xs)[1])(params)
        got_vmap = jax.vmap(lambda x: jax.jvp(lambda x: fn(FUSED)(params, x), (x,), (x,))[1])(
            jnp.stack([xs, -2 * xs])
        )
    want = jax.jvp(lambda x: fn(SCAN)(params, x), (xs,), (tangent_xs,))
    want_jac = jax.jacfwd(lambda p: fn(SCAN)(p, xs)[1])(params)
    want_vmap = jax.vmap(lambda x: jax.jvp(lambda x: fn(SCAN)(params, x), (x,), (x,))[1])(
        jnp.stack([xs, -2 * xs])
    )
    close(got, want, "float64")
    close(got_jac, want_jac, "float64")
    close(got_vmap, want_vmap, "float64")


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_second_derivatives_hidden_by_jit_match_the_scan(cell_name):
    """A Hessian-vector product (forward over reverse) and `jax.hessian` of jitted functions:
    the kernel's values, with derivatives of its derivatives from the scan."""
    cell, params, xs, carry = case(cell_name, "float64", "odd")
    lengths = jnp.array([6, 3, 0, 1, 5])

    def grad_fn(method, outputs: bool):
        def loss(p):
            ys, last = lj.unroll(cell, p, xs, carry, lengths=lengths, method=method)
            if outputs:
                return jnp.sum(jnp.sin(ys))
            return sum(jnp.sum(jnp.sin(a)) for a in jax.tree_util.tree_leaves(last))

        return jax.jit(jax.grad(loss))

    v = jax.tree_util.tree_map(jnp.cos, params)
    for outputs in (True, False):  # a loss on the outputs; on the final carry alone
        hvp = lambda p, g: jax.jvp(g, (p,), (v,))  # noqa: E731
        got = jax.jit(hvp, static_argnums=1)(params, grad_fn(FUSED, outputs))
        want = jax.jit(hvp, static_argnums=1)(params, grad_fn(SCAN, outputs))
        close(got, want, "float64")

    two = jax.tree_util.tree_map(lambda a: a[:2], carry)  # two sequences

    def hessian(method):
        def loss(x):
            return jnp.sum(lj.unroll(cell, params, x, two, method=method)[0] ** 2)

        return jax.hessian(jax.jit(loss))(xs[:2, :2])

    close(hessian(FUSED), hessian(SCAN), "float64")


def kernels_in(fn, *args) -> list[str]:
    """The fused kernels the compiled program of `fn(*args)` calls, in order."""
    import re

    return re.findall(r"lstmjax_(?:lstm|gru)_\w+", jax.jit(fn).lower(*args).as_text())


@needs_kernel
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_auto_runs_the_kernel_on_the_cpu_and_a_training_step_is_two_calls(cell_name):
    """The default method runs the kernel; a gradient is one training forward and one BPTT."""
    cell, params, xs, _ = case(cell_name, "float32", "tiles")
    infer = lambda p: lj.unroll(cell, p, xs)[0]  # noqa: E731
    train = jax.grad(lambda p: jnp.sum(lj.unroll(cell, p, xs)[0] ** 2))
    assert kernels_in(infer, params) == [f"lstmjax_{target(cell_name)}_forward"]
    assert kernels_in(train, params) == [
        f"lstmjax_{target(cell_name)}_forward_train",
        f"lstmjax_{target(cell_name)}_backward",
    ]
    close(
        train(params),
        jax.grad(lambda p: jnp.sum(lj.unroll(cell, p, xs, method=SCAN)[0] ** 2))(params),
        "float32",
    )


SEVERAL_DEVICES = """
import warnings, jax, jax.numpy as jnp, lstmjax as lj
cell = lj.lstm(8)
params = cell.init(jax.random.PRNGKey(0), 3)
xs = jnp.ones((4, 5, 3))
auto = jax.jit(lambda p: lj.unroll(cell, p, xs)[0]).lower(params).as_text()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = lj.unroll(cell, params, xs, method=lj.Fused())[0]
want = lj.unroll(cell, params, xs, method=lj.Scan())[0]
print(jax.device_count(), "lstmjax_lstm" in auto, [str(w.message) for w in caught],
      float(jnp.max(jnp.abs(got - want))))
"""


@needs_kernel
def test_several_cpu_devices_run_the_scan():
    """With two CPU devices a sharded jit would gather the batch onto each device around the
    kernel's unpartitioned call: "auto" runs the scan, an explicit lj.Fused() says why."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SEVERAL_DEVICES],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]  # devices, kernel under "auto", warnings, diff
    assert line.startswith("2 False [")
    assert "2 CPU devices are visible" in line and "gather the whole batch" in line
    assert float(line.rsplit(" ", 1)[1]) == 0.0


@needs_kernel
def test_export_needs_the_scan_as_documented():
    """`jax.export` refuses the kernel's custom call (JAX's rule); the scan exports."""
    from jax import export

    cell, params, xs, _ = case("lstm", "float32", "odd")
    with pytest.raises(ValueError, match="Cannot serialize code with custom calls"):
        export.export(jax.jit(lambda p: lj.unroll(cell, p, xs)[0]))(params)
    exported = export.export(jax.jit(lambda p: lj.unroll(cell, p, xs, method=SCAN)[0]))(params)
    close(exported.call(params), lj.unroll(cell, params, xs)[0], "float32")


@needs_kernel
def test_auto_runs_the_scan_silently_where_the_kernel_cannot(fresh_notices):
    """ "auto" never warns: a projected LSTM and a layer-normalised GRU choose the scan
    without a notice."""
    _, _, xs, _ = case("lstm", "float64", "odd")
    projected = lj.lstm(4, proj_size=2)
    p_proj = projected.init(jax.random.PRNGKey(0), xs.shape[-1])
    gru_ln = lj.gru(4, layer_norm=True)
    p_gru_ln = gru_ln.init(jax.random.PRNGKey(1), xs.shape[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got_proj = lj.unroll(projected, p_proj, xs)
        got_gru_ln = lj.unroll(gru_ln, p_gru_ln, xs)
        assert kernels_in(lambda x: lj.unroll(projected, p_proj, x)[0], xs) == []
        assert kernels_in(lambda x: lj.unroll(gru_ln, p_gru_ln, x)[0], xs) == []
    close(got_proj, lj.unroll(projected, p_proj, xs, method=SCAN), "float64")
    close(got_gru_ln, lj.unroll(gru_ln, p_gru_ln, xs, method=SCAN), "float64")


# ------------------------------------------------------------------ the fallback


@pytest.fixture
def fresh_notices(monkeypatch):
    """Every reason unannounced, as in a new process (one warning per reason)."""
    monkeypatch.setattr(_fused, "_ANNOUNCED", set())


def fallback_case(call, pattern):
    """`call(method)` with lj.Fused warns once naming `pattern` and equals the scan's result."""
    with pytest.warns(lj.FusedFallbackWarning, match=pattern):
        got = call(FUSED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call with the same reason is quiet
        again = call(FUSED)
    want = call(SCAN)
    close(got, want, "float64")
    close(again, want, "float64")


def test_extension_absent_runs_the_scan_with_one_notice(fresh_notices, monkeypatch):
    monkeypatch.setattr(_fused_kernel, "load", lambda: (None, "it was not built (test)"))
    assert lj.Fused.unavailable() == "it was not built (test)"
    cell, params, xs, carry = case("lstm", "float64", "odd")
    fallback_case(lambda m: lj.unroll(cell, params, xs, carry, method=m), "not built \\(test\\)")


@needs_kernel
def test_uncovered_cells_run_the_scan_with_one_notice(fresh_notices):
    _, _, xs, _ = case("lstm", "float64", "odd")
    for cell, pattern in (
        (lj.lstm(4, proj_size=2), "proj_size"),
        (lj.gru(4, layer_norm=True), "GRU without layer norm only"),
        (lj.rnn(4), "lj.lstm and lj.gru only"),
    ):
        params = cell.init(jax.random.PRNGKey(0), xs.shape[-1])
        fallback_case(lambda m, c=cell, p=params: lj.unroll(c, p, xs, method=m), pattern)


@needs_kernel
def test_forward_mode_runs_the_scan_with_one_notice(fresh_notices):
    cell, params, xs, carry = case("lstm", "float64", "odd")

    def tangent(method):
        run = lambda x: lj.unroll(cell, params, x, carry, method=method)[0]  # noqa: E731
        return jax.jvp(run, (xs,), (jnp.ones_like(xs),))

    fallback_case(tangent, "forward mode")


@needs_kernel
def test_float16_runs_the_scan_with_one_notice(fresh_notices):
    cell = lj.gru(4, dtype=jnp.float16)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jnp.ones((2, 3, 3), jnp.float16)
    with pytest.warns(lj.FusedFallbackWarning, match="not float16"):
        got = lj.unroll(cell, params, xs, method=FUSED)
    want = lj.unroll(cell, params, xs, method=SCAN)
    np.testing.assert_array_equal(got[0], want[0])


# ------------------------------------------------------------------ options


def test_fused_options_are_checked_when_built():
    assert lj.Fused() == lj.Fused(threads="auto", fallback=lj.Scan())
    assert lj.Fused(threads=3).threads == 3
    assert_clear(
        ValueError, lambda: lj.Fused(threads=0), "threads must be 'auto' or an int >= 1", "got 0"
    )
    assert_clear(ValueError, lambda: lj.Fused(threads=True), "got True")
    assert_clear(ValueError, lambda: lj.Fused(threads="all"), "got 'all'")
    assert_clear(
        TypeError, lambda: lj.Fused(fallback=lj.Affine()), "fallback must be an lj.Scan", "Affine"
    )


def test_fused_shorthand_and_class_misuse():
    cell, params, xs, _ = case("lstm", "float64", "odd")
    assert_clear(
        TypeError,
        lambda: lj.unroll(cell, params, xs, method=lj.Fused),
        "option object, e.g. lj.Fused\\(\\)",
    )
    with warnings.catch_warnings():
        # "fused" is lj.Fused() at its defaults: where the extension is absent it warns.
        warnings.simplefilter("ignore", lj.FusedFallbackWarning)
        got = lj.unroll(cell, params, xs, method="fused")
    close(got, lj.unroll(cell, params, xs, method=SCAN), "float64")

"""The projected LSTM (LSTMP, `lj.lstm(H, proj_size=P)`) against PyTorch's `proj_size`.

Reference: `torch.nn.LSTM(proj_size=P)` with the same weights and inputs.
Claims and tolerances:
  * outputs, h_n ([L*D, B, P]) and c_n ([L*D, B, H]) within 1e-5 in float32,
    1 or 2 layers, uni- or bidirectional, from zeros and from a given state;
  * with `lengths`, equal to torch's packed sequences within 1e-5;
  * float64 modules within 1e-12;
  * `to_torch_state_dict` is the exact inverse of `from_torch`;
  * float64 gradients (which go through the hand-derived LSTM backward pass
    with a [P, 4H] W_h, then autodiff of the projection) equal central
    finite differences within 1e-6 relative, peepholes and LN included.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import needs_torch
from finite_differences import assert_grad_matches_fd

import lstmjax as lj
from lstmjax import interop

try:
    import torch
except ImportError:  # the tests against torch skip (conftest.needs_torch); the rest run
    torch = None

# torch warns that its oneDNN path has no projection and takes its default one.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning")

I, H, P, B, T = 4, 6, 3, 3, 5
ATOL32 = 1e-5


def make_module(num_layers=1, bidirectional=False, seed=0, dtype=None):
    torch.manual_seed(seed)
    module = torch.nn.LSTM(
        I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True, proj_size=P
    )
    return module.to(dtype or torch.float32).eval()


def random_state(module, rng, dtype=np.float32):
    n = module.num_layers * (2 if module.bidirectional else 1)
    h0 = rng.standard_normal((n, B, P)).astype(dtype)
    c0 = rng.standard_normal((n, B, H)).astype(dtype)
    return h0, c0


def torch_run(module, x, state=None, lengths=None):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    s0 = None if state is None else tuple(map(torch.from_numpy, state))
    inputs = torch.from_numpy(x)
    if lengths is not None:
        inputs = pack_padded_sequence(
            inputs, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
        )
    with torch.no_grad():
        o, (h, c) = module(inputs, s0)
    if lengths is not None:
        o, _ = pad_packed_sequence(o, batch_first=True, total_length=T)
    return o.numpy(), (h.numpy(), c.numpy())


def assert_matches(got, want, atol):
    (o, carry), (o_t, (h_t, c_t)) = got, want
    assert o.shape == o_t.shape and carry.h.shape == h_t.shape and carry.c.shape == c_t.shape
    np.testing.assert_allclose(o, o_t, rtol=0, atol=atol)
    np.testing.assert_allclose(carry.h, h_t, rtol=0, atol=atol)
    np.testing.assert_allclose(carry.c, c_t, rtol=0, atol=atol)


@needs_torch
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_from_torch_matches_module(num_layers, bidirectional):
    module = make_module(num_layers, bidirectional)
    net, params = interop.from_torch(module)
    assert net.cell.name == "lstm_proj" and net.cell.output_size == P
    assert params[0].forward.w_h.shape == (P, 4 * H)
    assert params[0].forward.w_proj.shape == (H, P)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    s0 = random_state(module, rng)
    apply = jax.jit(net.apply)
    assert_matches(apply(params, jnp.asarray(x)), torch_run(module, x), ATOL32)
    carry0 = interop.carry_from_torch(s0)
    assert_matches(apply(params, jnp.asarray(x), carry0), torch_run(module, x, s0), ATOL32)


@needs_torch
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_lengths_match_packed_sequence(bidirectional):
    module = make_module(2, bidirectional, seed=2)
    net, params = interop.from_torch(module)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([2, T, 4])
    s0 = random_state(module, rng)
    got = jax.jit(net.apply)(
        params, jnp.asarray(x), interop.carry_from_torch(s0), lengths=jnp.asarray(lengths)
    )
    assert_matches(got, torch_run(module, x, s0, lengths), ATOL32)


@needs_torch
def test_float64_module():
    module = make_module(2, True, seed=3, dtype=torch.float64)
    net, params = interop.from_torch(module)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.float64)}
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, I))
    s0 = random_state(module, rng, np.float64)
    got = jax.jit(net.apply)(params, jnp.asarray(x), interop.carry_from_torch(s0))
    assert_matches(got, torch_run(module, x, s0), 1e-12)


@needs_torch
def test_to_torch_state_dict_round_trip():
    net, params = interop.from_torch(make_module(2, True, seed=5))
    module = make_module(2, True, seed=6)
    module.load_state_dict(interop.to_torch_state_dict(net, params), strict=True)
    _, back = interop.from_torch(module)
    for got, want in zip(
        jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    x = np.random.default_rng(7).standard_normal((B, T, I)).astype(np.float32)
    assert_matches(jax.jit(net.apply)(params, jnp.asarray(x)), torch_run(module, x), ATOL32)


@needs_torch
def test_to_torch_rejects_layer_norm():
    net = lj.recurrent(lj.lstm(H, layer_norm=True, proj_size=P))
    params = jax.eval_shape(lambda k: net.init(k, I), jax.random.key(0))
    with pytest.raises(ValueError, match="no torch counterpart"):
        interop.to_torch_state_dict(net, params)


@pytest.mark.parametrize(
    "options",
    [dict(), dict(peephole=True), dict(layer_norm=True), dict(proj_size=H + 2)],
    ids=["proj", "proj_peephole", "proj_ln", "proj_wider"],
)
def test_gradients_match_finite_differences(options):
    options = dict(proj_size=P) | options
    cell = lj.lstm(H, dtype=jnp.float64, **options)
    params = cell.init(jax.random.key(0), I)
    params = jax.tree_util.tree_map(
        lambda v: v + 0.3 * jax.random.normal(jax.random.key(v.size), v.shape, v.dtype), params
    )
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    carry0 = jax.tree_util.tree_map(
        lambda v: jax.random.normal(jax.random.key(7), v.shape, v.dtype),
        cell.initial_carry((B,)),
    )
    w = jax.random.normal(jax.random.key(2), (B, T, cell.output_size), jnp.float64)

    def loss(args):
        p, x, c0 = args
        ys, carry = lj.unroll(cell, p, x, c0)
        return jnp.sum(w * ys) + jnp.sum(carry.c**2)

    assert_grad_matches_fd(loss, (params, xs, carry0))

"""PyTorch parity: networks built by `lj.interop.from_torch` equal the torch modules.

The reference is torch itself (CPU, float32 unless stated), run on the same
inputs with the same weights. Claims and tolerances:
  * outputs, h_n and c_n agree within 1e-5 (float32) for RNN (tanh, relu),
    LSTM and GRU, 1 or 2 layers, uni- or bidirectional, with or without bias,
    from a zero or a given initial state;
  * with `lengths`, outputs and final states agree with torch's
    `pack_padded_sequence(enforce_sorted=False)`, padding included (zeros);
  * float64 modules agree within 1e-12;
  * input gradients agree with torch autograd within 1e-5;
  * `to_torch_state_dict` is the exact inverse of `from_torch`.
LSTMs with `proj_size` are checked the same way in `test_projection.py`.
"""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TORCH_MISSING

import lstmjax as lj
from lstmjax import interop

torch = pytest.importorskip("torch", reason=TORCH_MISSING)

I, H, B, T = 4, 6, 3, 5
ATOL32 = 1e-5
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def make_module(kind, num_layers=1, bidirectional=False, bias=True, dropout=0.0, seed=0):
    """A batch-first torch module of `kind`, seeded, in eval mode."""
    torch.manual_seed(seed)
    kwargs = dict(
        input_size=I,
        hidden_size=H,
        num_layers=num_layers,
        bias=bias,
        batch_first=True,
        dropout=dropout,
        bidirectional=bidirectional,
    )
    if kind.startswith("rnn"):
        module = torch.nn.RNN(nonlinearity=kind[4:], **kwargs)
    else:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](**kwargs)
    return module.eval()


def random_state(kind, module, rng, dtype=np.float32):
    """A random initial state in torch's layout, as numpy arrays."""
    shape = (module.num_layers * (2 if module.bidirectional else 1), B, H)
    h0 = rng.standard_normal(shape).astype(dtype)
    if kind == "lstm":
        return h0, rng.standard_normal(shape).astype(dtype)
    return h0


def torch_run(module, x, state=None):
    """Run the torch module; returns numpy `(o, state)` with state `h` or `(h, c)`."""
    to_t = torch.from_numpy
    s0 = (
        None
        if state is None
        else tuple(map(to_t, state))
        if isinstance(state, tuple)
        else to_t(state)
    )
    with torch.no_grad():
        o, s = module(to_t(x), s0)
    s = tuple(t.numpy() for t in s) if isinstance(s, tuple) else s.numpy()
    return o.numpy(), s


@functools.cache
def apply_twice(net):
    """`net.apply` from zeros and from a given state, jitted once per net.

    `from_torch` returns one shared net per configuration, so the bias and
    no-bias variants of a configuration reuse this compilation.
    """

    @jax.jit
    def both(params, x, c0):
        # torch's eval mode: the carried-over dropout (num_layers > 1) is off
        return net.apply(params, x, deterministic=True), net.apply(
            params, x, c0, deterministic=True
        )

    return both


def assert_state_close(got, want, atol):
    """Compare an lstmjax carry with a torch state (`h` or `(h, c)`)."""
    if isinstance(want, tuple):
        assert isinstance(got, lj.LSTMCarry)
        np.testing.assert_allclose(got.h, want[0], rtol=0, atol=atol)
        np.testing.assert_allclose(got.c, want[1], rtol=0, atol=atol)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_from_torch_matches_module(kind, num_layers, bidirectional, bias):
    dropout = 0.25 if num_layers > 1 else 0.0  # carried over; torch's eval mode skips it
    module = make_module(kind, num_layers, bidirectional, bias, dropout)
    net, params = interop.from_torch(module)
    assert (net.num_layers, net.bidirectional, net.dropout) == (num_layers, bidirectional, dropout)
    leaves = jax.tree_util.tree_leaves(params)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype(jnp.float32)}

    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    s0 = random_state(kind, module, rng)

    (o, c), (o0, c0) = apply_twice(net)(params, jnp.asarray(x), interop.carry_from_torch(s0))
    o_t, s_t = torch_run(module, x)
    o0_t, s0_t = torch_run(module, x, s0)
    assert o.dtype == jnp.float32 and o.shape == o_t.shape
    np.testing.assert_allclose(o, o_t, rtol=0, atol=ATOL32)
    assert_state_close(c, s_t, ATOL32)
    np.testing.assert_allclose(o0, o0_t, rtol=0, atol=ATOL32)
    assert_state_close(c0, s0_t, ATOL32)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_lengths_match_packed_sequence(kind, bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    module = make_module(kind, num_layers=2, bidirectional=bidirectional)
    net, params = interop.from_torch(module)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([2, T, 4])  # unsorted, one full-length sequence
    s0 = random_state(kind, module, rng)

    o, c = jax.jit(net.apply)(
        params, jnp.asarray(x), interop.carry_from_torch(s0), lengths=jnp.asarray(lengths)
    )
    packed = pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    state = tuple(map(torch.from_numpy, s0)) if kind == "lstm" else torch.from_numpy(s0)
    with torch.no_grad():
        o_packed, s_t = module(packed, state)
    o_t, _ = pad_packed_sequence(o_packed, batch_first=True, total_length=T)
    s_t = tuple(t.numpy() for t in s_t) if kind == "lstm" else s_t.numpy()

    np.testing.assert_allclose(o, o_t.numpy(), rtol=0, atol=ATOL32)
    assert_state_close(c, s_t, ATOL32)
    assert not np.asarray(o)[0, 2:].any()  # padding gives zero outputs in both


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float64_module(kind):
    module = make_module(kind, num_layers=2, bidirectional=True).double()
    net, params = interop.from_torch(module)
    leaves = jax.tree_util.tree_leaves(params)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype(jnp.float64)}
    x = np.random.default_rng(3).standard_normal((B, T, I))
    o, c = jax.jit(net.apply)(params, jnp.asarray(x))
    o_t, s_t = torch_run(module, x)
    np.testing.assert_allclose(o, o_t, rtol=0, atol=1e-12)
    assert_state_close(c, s_t, 1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_input_gradient_matches_autograd(kind):
    """BPTT through the copied net equals torch's backward for a scalar loss."""
    module = make_module(kind, num_layers=1, bidirectional=True)
    net, params = interop.from_torch(module)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    w = rng.standard_normal((B, T, 2 * H)).astype(np.float32)

    def loss(x):
        o, carry = net.apply(params, x)
        h_n = carry.h if kind == "lstm" else carry
        return jnp.sum(o * w) + jnp.sum(h_n**2)

    grad = jax.jit(jax.grad(loss))(jnp.asarray(x))

    x_t = torch.from_numpy(x).requires_grad_(True)
    o_t, s_t = module(x_t)
    h_t = s_t[0] if kind == "lstm" else s_t
    (torch.sum(o_t * torch.from_numpy(w)) + torch.sum(h_t**2)).backward()
    np.testing.assert_allclose(grad, x_t.grad.numpy(), rtol=0, atol=ATOL32)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_to_torch_state_dict_round_trip(kind):
    """lstmjax params -> torch module gives the same outputs, and back exactly."""
    # Generic lstmjax params (every field random), here copied from another module.
    net, params = interop.from_torch(make_module(kind, num_layers=2, bidirectional=True, seed=5))
    module = make_module(kind, num_layers=2, bidirectional=True, seed=6)
    module.load_state_dict(interop.to_torch_state_dict(net, params), strict=True)

    _, back = interop.from_torch(module)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    for got, want in zip(
        jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params), strict=True
    ):
        np.testing.assert_array_equal(got, want)

    x = np.random.default_rng(7).standard_normal((B, T, I)).astype(np.float32)
    o, c = jax.jit(net.apply)(params, jnp.asarray(x))
    o_t, s_t = torch_run(module, x)
    np.testing.assert_allclose(o, o_t, rtol=0, atol=ATOL32)
    assert_state_close(c, s_t, ATOL32)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_batch_first_false_module_gives_time_major_net(kind):
    """torch's default layout: xs, o are [time, batch, features]; h_n unchanged."""
    module = make_module(kind, num_layers=2, bidirectional=True)
    module.batch_first = False  # same weights, torch's default layout
    net, params = interop.from_torch(module)
    assert net.time_major
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    o_j, carry_j = net.apply(params, jnp.asarray(x))
    with torch.no_grad():
        o_t, state_t = module(torch.from_numpy(x))
    assert o_j.shape == (T, B, 2 * H)
    np.testing.assert_allclose(o_j, o_t.numpy(), atol=ATOL32)
    h_t = state_t[0] if kind == "lstm" else state_t
    h_j = carry_j.h if kind == "lstm" else carry_j
    np.testing.assert_allclose(h_j, h_t.numpy(), atol=ATOL32)


def test_rejects_other_modules():
    with pytest.raises(TypeError, match="got Linear"):
        interop.from_torch(torch.nn.Linear(I, H))


def test_to_torch_rejects_peephole():
    net = lj.recurrent(lj.lstm(H, peephole=True))
    params = jax.eval_shape(lambda k: net.init(k, I), jax.random.key(0))  # shapes suffice
    with pytest.raises(ValueError, match="no torch counterpart"):
        interop.to_torch_state_dict(net, params)


def test_import_does_not_load_torch():
    code = (
        "import sys, lstmjax, lstmjax.interop; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

"""PyTorch -> lstmjax: copy the weights of `torch.nn.RNN`, `LSTM` and `GRU`.

torch is an optional dependency: it is imported inside the functions here,
never when `lstmjax` is imported.

The mapping, for layer k and direction suffix s ("" forward, "_reverse"
backward), into `params[k].forward` / `params[k].backward`:

    torch (shape)                   lstmjax field (shape)
    weight_ih_l{k}{s}  [G*H, I_k]   w_x = weight_ih.T            [I_k, G*H]
    weight_hh_l{k}{s}  [G*H, H]     w_h = weight_hh.T            [H, G*H]
    bias_ih_l{k}{s}    [G*H]        b   = bias_ih + bias_hh      [G*H]
    bias_hh_l{k}{s}    [G*H]          (GRU: b = bias_ih + [bias_hh_r, bias_hh_z, 0],
                                       b_hn = bias_hh_n          [H])

    weight_hr_l{k}{s}  [P, H]       w_proj = weight_hr.T         [H, P]
                                      (LSTM with proj_size=P only; then
                                       weight_hh is [4H, P] and w_h [P, 4H])

G is 1 (RNN), 4 (LSTM) or 3 (GRU); I_0 is the module's input_size and
I_k = directions * H above it (directions * P with a projection). No
transposition of gate blocks is needed: both libraries order the LSTM gates
(i, f, g, o) and the GRU gates (r, z, n), and both use the GRU update
h_t = z*h_{t-1} + (1-z)*n_t with the reset gate applied after the recurrent matmul (PyTorch's
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) is `lj.gru(reset_after=True)`).
The two biases of an RNN or LSTM gate are only ever summed, so they fold into
one; the GRU's b_hn sits inside the reset product and must stay apart. A
module built with `bias=False` gets zero biases.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._array_checks import check_float
from lstmjax._cell import Cell
from lstmjax._gru import GRUParams, gru
from lstmjax._layers import LayerParams, Recurrent, check_net_params, recurrent
from lstmjax._lstm import LSTMCarry, LSTMParams, lstm
from lstmjax._rnn import RNNParams, rnn
from lstmjax._typing import Array, Carry

# torch's `module.mode` -> number of gate blocks G in each weight matrix.
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
_DIRECTION_SUFFIX = ("", "_reverse")


def _import_torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is in the test extras
        raise ImportError(
            "lstmjax.interop's PyTorch functions need torch; install it with "
            "`pip install torch` (or lstmjax's `test` extras)."
        ) from err
    return torch


def _check_module(module: Any, torch) -> str:
    """Return the module's mode ("RNN_TANH", "RNN_RELU", "LSTM", "GRU") or raise."""
    if not isinstance(module, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)):
        raise TypeError(
            "from_torch expects a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU; "
            f"got {type(module).__name__}."
        )
    return module.mode


def _param_dtype(module, torch):
    """float64 for a float64 module, float32 for every other real float dtype."""
    if module.weight_ih_l0.dtype.is_complex:
        raise TypeError(
            f"from_torch: the module's parameters are complex ({module.weight_ih_l0.dtype}); "
            "lstmjax's cells are real-valued. Expected a float16/bfloat16/float32/float64 module."
        )
    if module.weight_ih_l0.dtype != torch.float64:
        return jnp.float32
    if not jax.config.read("jax_enable_x64"):
        raise ValueError(
            "from_torch: the module is float64 but JAX's float64 is off. Enable it "
            'with jax.config.update("jax_enable_x64", True), or convert the module '
            "with module.float() first."
        )
    return jnp.float64


def _cell_for(mode: str, hidden_size: int, dtype, proj_size: int = 0) -> Cell:
    if mode == "RNN_TANH":
        return rnn(hidden_size, activation=jnp.tanh, dtype=dtype)
    if mode == "RNN_RELU":
        return rnn(hidden_size, activation=jax.nn.relu, dtype=dtype)
    if mode == "LSTM":
        return lstm(hidden_size, proj_size=proj_size or None, dtype=dtype)
    return gru(hidden_size, reset_after=True, dtype=dtype)


# Equal configurations give equal nets (cells and nets are values), but a
# bound method compares its object by identity (`net1.apply != net2.apply`
# for equal nets), and `jax.jit(net.apply)` caches by that method: so modules
# of one configuration share one cached net, and `jax.jit(net.apply)` compiles
# once for all of them. (`jax.jit(f, static_argnums=...)` over the net itself
# would need no cache.)
@functools.lru_cache(maxsize=64)
def _net_for(
    mode: str,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    time_major: bool,
    dtype,
    proj_size: int = 0,
) -> Recurrent:
    cell = _cell_for(mode, hidden_size, dtype, proj_size)
    return recurrent(cell, num_layers, bidirectional, dropout, time_major=time_major)


def _numpy(module, name: str, torch, np_dtype) -> np.ndarray:
    """The named torch parameter as a numpy array of `np_dtype`."""
    tensor = getattr(module, name).detach().cpu()
    # bfloat16 has no numpy counterpart: go through float32 or float64 first.
    tensor = tensor.to(torch.float64 if np_dtype == np.float64 else torch.float32)
    return tensor.numpy().astype(np_dtype)


def _direction_params(module, mode: str, layer: int, suffix: str, torch, dtype):
    """The lstmjax params of one direction of one layer (see the module docstring)."""
    np_dtype = np.dtype(dtype)
    H = module.hidden_size
    tag = f"l{layer}{suffix}"
    w_ih = _numpy(module, f"weight_ih_{tag}", torch, np_dtype)  # [G*H, I_k]
    w_hh = _numpy(module, f"weight_hh_{tag}", torch, np_dtype)  # [G*H, H] (LSTMP: [4H, P])
    if module.bias:
        b_ih = _numpy(module, f"bias_ih_{tag}", torch, np_dtype)  # [G*H]
        b_hh = _numpy(module, f"bias_hh_{tag}", torch, np_dtype)  # [G*H]
    else:
        b_ih = b_hh = np.zeros(_GATES[mode] * H, np_dtype)
    w_x = jnp.asarray(w_ih.T, dtype)
    w_h = jnp.asarray(w_hh.T, dtype)
    if mode == "GRU":
        # b_hr and b_hz are summed with the input biases; b_hn stays inside r * (...).
        b = b_ih + np.concatenate([b_hh[: 2 * H], np.zeros(H, np_dtype)])
        b_hn = b_hh[2 * H :]
        return GRUParams(w_x=w_x, w_h=w_h, b=jnp.asarray(b, dtype), b_hn=jnp.asarray(b_hn, dtype))
    b = jnp.asarray(b_ih + b_hh, dtype)
    if mode == "LSTM":
        w_proj = None
        if getattr(module, "proj_size", 0) > 0:
            w_proj = jnp.asarray(_numpy(module, f"weight_hr_{tag}", torch, np_dtype).T, dtype)
        return LSTMParams(w_x=w_x, w_h=w_h, b=b, peephole=None, w_proj=w_proj)
    return RNNParams(w_x=w_x, w_h=w_h, b=b)


def from_torch(module: Any) -> tuple[Recurrent, tuple[LayerParams, ...]]:
    """Build an lstmjax network equal to a PyTorch recurrent module.

    Supports `torch.nn.RNN` (nonlinearity "tanh" or "relu"), `torch.nn.LSTM`
    (with or without `proj_size`) and `torch.nn.GRU`, any `num_layers`,
    `bidirectional`, with or without `bias`. The weights are
    copied as in this module's docstring table: each `weight_*` is transposed,
    `bias_ih + bias_hh` is folded into `b`, and the GRU keeps `bias_hh`'s
    n-block apart as `b_hn`. `dropout` is carried over to the net (active only
    when `net.apply` gets a `key`, like a torch module in `train()` mode;
    `deterministic=True` is `eval()` mode; a one-layer module's dropout,
    which torch never applies, becomes 0.0), and
    so is the layout: a module with `batch_first=False` (torch's default)
    gives a net with `time_major=True`, taking and returning `[time, batch,
    features]` as the module does.

    Modules of the same configuration get the very same `net` object, so a
    jitted `net.apply` compiled for one serves them all.

    Parameters stay float32 unless the module is float64 (then JAX's x64
    must be on); float16 and bfloat16 modules give float32 parameters.

        net, params = lj.interop.from_torch(torch_lstm)
        o, (h_n, c_n) = net.apply(params, x, deterministic=True)  # == torch_lstm.eval()(x)

    Args:
      module: the torch module; it is only read.

    Returns:
      `(net, params)`: `net = lj.recurrent(cell, num_layers, bidirectional,
      dropout, time_major=not batch_first)` with `cell` `lj.rnn(H, tanh or
      relu)`, `lj.lstm(H)` (`lj.lstm(H, proj_size=P)` for a module with
      `proj_size=P > 0`) or `lj.gru(H, reset_after=True)`, and `params` a
      tuple of `LayerParams`, one per layer, with `backward` set only when
      bidirectional.

    Raises:
      TypeError: not an RNN, LSTM or GRU module.
      ValueError: a float64 module while JAX's x64 is off.
    """
    torch = _import_torch()
    mode = _check_module(module, torch)
    dtype = _param_dtype(module, torch)
    # torch drops between layers only, so a one-layer module's dropout never acts
    # (torch warns); lj.recurrent refuses it, and the net gets 0.0, which is the same.
    dropout = float(module.dropout) if module.num_layers > 1 else 0.0
    net = _net_for(
        mode,
        module.hidden_size,
        module.num_layers,
        bool(module.bidirectional),
        dropout,
        not module.batch_first,
        dtype,
        int(getattr(module, "proj_size", 0)),
    )
    directions = 2 if module.bidirectional else 1
    params = []
    for layer in range(module.num_layers):
        per_direction = [
            _direction_params(module, mode, layer, _DIRECTION_SUFFIX[d], torch, dtype)
            for d in range(directions)
        ]
        params.append(LayerParams(*per_direction))
    return net, tuple(params)


def carry_from_torch(state: Any) -> Carry:
    """Convert a torch initial or final state to an lstmjax layer carry.

    Args:
      state: `h` (RNN, GRU) or the pair `(h, c)` (LSTM), torch tensors (or
        arrays) `[num_layers * directions, batch, hidden]`.

    Returns:
      A JAX array `h`, or `LSTMCarry(h, c)` for a pair, same shapes and dtype.
    """
    if isinstance(state, (tuple, list)):
        h, c = state
        return LSTMCarry(h=_to_jax(h), c=_to_jax(c))
    return _to_jax(state)


def _to_jax(tensor) -> Array:
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().numpy()
    array = jnp.asarray(tensor)
    check_float(array, "carry_from_torch: state")
    return array


def to_torch_state_dict(net: Recurrent, params: tuple[LayerParams, ...]) -> dict[str, Any]:
    """The inverse of `from_torch`: a `state_dict` for the matching torch module.

    Load it with `module.load_state_dict(sd)` into a module built with
    `bias=True` and this net's sizes (and `batch_first=not net.time_major`
    for the same layout): `torch.nn.LSTM` for
    `lj.lstm` (no peephole, no layer_norm; `proj_size=P` for
    `lj.lstm(H, proj_size=P)`, then `weight_hr = w_proj.T`), `torch.nn.GRU`
    for `lj.gru(reset_after=True)`,
    `torch.nn.RNN` for `lj.rnn` with activation tanh or relu (torch's
    `nonlinearity`, which a state_dict does not hold: build the module
    with the same one).
    `weight_ih = w_x.T`, `weight_hh = w_h.T`, `bias_ih = b`, and `bias_hh` is
    zero except for the GRU's n-block, which holds `b_hn`.

    Args:
      net: the `Recurrent` the params belong to.
      params: its parameters, a tuple of `LayerParams`.

    Returns:
      A dict from torch parameter name to a CPU tensor of the params' dtype.

    Raises:
      TypeError: `net` is not a `Recurrent` (e.g. a bare cell), or `params`
        are not its params' types.
      ValueError: the cell has no torch counterpart (another cell, peepholes,
        layer norm, reset_before, an activation other than tanh and relu),
        or `params` do not fit `net` (layers, directions, shapes, a weight
        missing): the same checks as `net.apply`.
    """
    torch = _import_torch()
    where = "to_torch_state_dict"
    if not isinstance(net, Recurrent):
        raise TypeError(
            f"{where}: net must be an lj.recurrent(...) net (the torch module is a stack of "
            f"layers); got {type(net).__name__}. Wrap a cell as lj.recurrent(cell)."
        )
    if net.cell.name not in ("rnn", "lstm", "lstm_proj", "gru"):
        raise ValueError(
            f"{where}: a '{net.cell.name}' cell has no torch counterpart; "
            "expected an lj.rnn, lj.lstm (peephole=False, layer_norm=False; proj_size "
            "allowed) or lj.gru (reset_after=True, layer_norm=False) net."
        )
    activation = getattr(net.cell, "activation", None)
    if net.cell.name == "rnn" and activation not in (jnp.tanh, jax.nn.relu):
        raise ValueError(
            f"{where}: torch.nn.RNN's nonlinearity is 'tanh' or 'relu'; this lj.rnn's "
            f"activation is {getattr(activation, '__name__', activation)!r}, which no torch "
            "module computes."
        )
    _check_export_params(net, params, where)
    state = {}
    for layer, p in enumerate(params):
        directions = (p.forward,) if p.backward is None else (p.forward, p.backward)
        for suffix, q in zip(_DIRECTION_SUFFIX[: len(directions)], directions, strict=True):
            b = np.array(q.b)  # copies: torch wants writable arrays
            b_hh = np.zeros_like(b)
            if isinstance(q, GRUParams):
                H = b.shape[0] // 3
                b_hh[2 * H :] = np.asarray(q.b_hn)
            tag = f"l{layer}{suffix}"
            w_proj = getattr(q, "w_proj", None)  # the LSTM's projection (proj_size), if any
            for name, value in (
                (f"weight_ih_{tag}", np.asarray(q.w_x).T),
                (f"weight_hh_{tag}", np.asarray(q.w_h).T),
                (f"bias_ih_{tag}", b),
                (f"bias_hh_{tag}", b_hh),
            ) + (((f"weight_hr_{tag}", np.asarray(w_proj).T),) if w_proj is not None else ()):
                state[name] = _tensor(torch, value)
    return state


def _check_export_params(net: Recurrent, params: Any, where: str) -> None:
    """`params` must be `net`'s, as `net.apply` checks them (input size read from w_x)."""
    try:
        input_size = int(jnp.shape(params[0].forward.w_x)[0])
    except (TypeError, IndexError, AttributeError, KeyError):
        input_size = 1  # malformed: check_net_params names what is wrong before any shape
    check_net_params(net, params, input_size, where)


def _tensor(torch, value):
    """A contiguous CPU tensor of `value`'s dtype (bfloat16, which numpy lacks, via float32)."""
    array = np.asarray(value)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(np.array(array, np.float32, order="C")).to(torch.bfloat16)
    return torch.from_numpy(np.array(array, order="C"))

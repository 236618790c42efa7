"""Stacked and bidirectional recurrent layers, PyTorch-shaped."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._cell import Array, Carry, Cell, Params, check_cell, check_params
from lstmjax._checks import (
    check_bool,
    check_key,
    check_rate,
    check_real,
    check_size,
)
from lstmjax._recurrent_dropout import recurrent_dropout as _recurrent_dropout
from lstmjax._unroll import unroll as unroll_cell


class LayerParams(NamedTuple):
    """One layer of a `recurrent` net: the forward direction and the backward one (or None)."""

    forward: Params  # the cell's parameters for the forward direction
    backward: Optional[Params] = None  # the reverse direction (bidirectional only)


class Recurrent(NamedTuple):
    """A stack of recurrent layers as pure functions.

    Attributes:
      init: `(key, input_size) -> params`, a tuple of `LayerParams`, one per layer.
      apply: `(params, xs, carry=None, *, lengths=None, resets=None, key=None) -> (o, carry)`.
      initial_carry: `(batch) -> carry` of zeros in PyTorch's layout.

    The remaining fields (`cell`, `num_layers`, `bidirectional`, `dropout`,
    `time_major`, `input_dropout`, `recurrent_dropout`, `zoneout`,
    `state_noise`) hold the configuration `recurrent` was called with.
    """

    init: Callable[[jax.Array, int], tuple[LayerParams, ...]]
    apply: Callable[..., tuple[Array, Carry]]
    initial_carry: Callable[[int], Carry]
    cell: Cell
    num_layers: int
    bidirectional: bool
    dropout: float
    time_major: bool = False
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0
    state_noise: float = 0.0


def check_net_params(net, params, input_size: int, where: str, name: str = "params") -> None:
    """Check a `recurrent` net's params: one `LayerParams` per layer, each direction present
    exactly when the net is bidirectional, and every cell's params against its input size."""
    if params is None:
        raise TypeError(f"{where}: {name} is None; create them with net.init(key, input_size).")
    if type(params) not in (tuple, list):
        raise TypeError(
            f"{where}: {name} must be a tuple of LayerParams, one per layer (from net.init); "
            f"got {type(params).__name__}."
        )
    if len(params) != net.num_layers:
        raise ValueError(
            f"{where}: {name} hold {len(params)} layers; this net has {net.num_layers}."
        )
    directions = 2 if net.bidirectional else 1
    for layer, p in enumerate(params):
        leaf = f"{name}[{layer}]"
        if not isinstance(p, LayerParams):
            raise TypeError(f"{where}: {leaf} must be LayerParams; got {type(p).__name__}.")
        if (p.backward is not None) != net.bidirectional:
            has = "has" if p.backward is not None else "has no"
            raise ValueError(
                f"{where}: {leaf} {has} backward direction, but this net is "
                f"{'bidirectional' if net.bidirectional else 'unidirectional'}; the params "
                f"were made by a net with bidirectional={p.backward is not None}."
            )
        check_params(net.cell, p.forward, input_size, where, f"{leaf}.forward")
        if p.backward is not None:
            check_params(net.cell, p.backward, input_size, where, f"{leaf}.backward")
        input_size = directions * net.cell.output_size


def _stack(carries: list) -> Carry:
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *carries)


def _split(carry: Carry, index: int) -> Carry:
    return jax.tree_util.tree_map(lambda leaf: leaf[index], carry)


def recurrent(
    cell: Cell,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    *,
    unroll: int = 1,
    remat: bool | int = False,
    time_major: bool = False,
    method: str = "auto",
    projection: str = "auto",
    input_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    state_noise: float = 0.0,
) -> Recurrent:
    """Stack `num_layers` copies of `cell`, optionally in both directions.

    Layout follows `torch.nn.LSTM(batch_first=True)` (with `time_major=True`,
    `batch_first=False`, torch's default):
      xs: `[batch, time, features]` (time-major: `[time, batch, features]`);
      o: `[batch, time, directions * output_size]` (time-major: `[time,
        batch, ...]`), the last layer's outputs (forward then backward features);
      carry: each leaf `[num_layers * directions, batch, size]`, index
        `layer * directions + direction`. For the LSTM it is `LSTMCarry(h, c)`,
        so `o, (h_n, c_n) = net.apply(params, xs)` works; RNN and GRU give `h_n`.
    Dropout (rate `dropout`) is applied to the outputs of every layer but the
    last, as PyTorch does, and only when `apply` gets a `key`.

    Inside the recurrence of every layer and direction (see
    `lstmjax.recurrent_dropout` for the exact rules), with a `key`:
    `input_dropout` and `recurrent_dropout` are variational (Gal & Ghahramani
    2016: one mask per sequence on the layer's inputs and one on h_{t-1}, the
    same at every step), `zoneout` keeps each carry unit's previous value
    with that probability at every step (Krueger et al. 2017), and
    `state_noise` adds Gaussian noise of that standard deviation to the carry
    after every step. Without a key only zoneout acts, by its expected
    update; with every rate 0 (default) nothing changes.

    Args:
      cell: the cell of every layer.
      num_layers: depth of the stack.
      bidirectional: run a second, reversed copy of each layer.
      dropout: drop rate between layers, in [0, 1).
      unroll: passed to `lstmjax.unroll`.
      remat: gradient checkpointing, passed to `lstmjax.unroll` (False, True
        for every round(sqrt(T)) steps, or an int number of steps).
      time_major: the layout of `xs` and `o`, as above.
      method, projection: passed to `lstmjax.unroll` for every layer.
      input_dropout, recurrent_dropout, zoneout: rates in [0, 1).
      state_noise: a standard deviation >= 0.
    """
    cell = check_cell(cell, "recurrent")
    num_layers = check_size("num_layers", num_layers)
    bidirectional = check_bool("bidirectional", bidirectional)
    dropout = check_rate("dropout", dropout)
    time_major = check_bool("time_major", time_major)
    inside = dict(
        input_rate=check_rate("input_dropout", input_dropout),
        recurrent_rate=check_rate("recurrent_dropout", recurrent_dropout),
        zoneout=check_rate("zoneout", zoneout),
        state_noise=check_real("state_noise", state_noise),
    )
    if inside["state_noise"] < 0:
        raise ValueError(f"state_noise must be >= 0; got {state_noise!r}.")
    stochastic = any(v > 0 for v in inside.values())
    directions = 2 if bidirectional else 1

    def init(key, input_size: int) -> tuple[LayerParams, ...]:
        check_size("input_size", input_size)
        layers = []
        for k in jax.random.split(key, num_layers):
            kf, kb = jax.random.split(k)
            layers.append(
                LayerParams(
                    forward=cell.init(kf, input_size),
                    backward=cell.init(kb, input_size) if bidirectional else None,
                )
            )
            input_size = directions * cell.output_size
        return tuple(layers)

    def initial_carry(batch: int) -> Carry:
        one = cell.initial_carry((batch,))
        return _stack([one] * (num_layers * directions))

    def apply(
        params: tuple[LayerParams, ...],
        xs: Array,
        carry: Optional[Carry] = None,
        *,
        lengths: Optional[Array] = None,
        resets: Optional[Array] = None,
        key: Optional[jax.Array] = None,
    ) -> tuple[Array, Carry]:
        """xs: `[batch, time, features]` (or time-major) -> (o, carry) as described above.

        `lengths` and `resets` are those of `lstmjax.unroll`, applied to every
        layer and both directions.
        """
        if jnp.ndim(xs) >= 1:
            check_net_params(net, params, jnp.shape(xs)[-1], "recurrent.apply")
        if key is not None:
            key = check_key(key, "recurrent.apply")
        if carry is not None:
            leading = {jnp.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(carry)}
            if leading != {num_layers * directions}:
                raise ValueError(
                    f"carry leaves must have leading size num_layers * directions = "
                    f"{num_layers * directions}; got {sorted(leading)}."
                )
        finals = []
        h = xs
        for layer, p in enumerate(params):
            outs = []
            for d, (dir_params, rev) in enumerate(((p.forward, False), (p.backward, True))):
                if d >= directions:
                    break
                c0 = None if carry is None else _split(carry, layer * directions + d)
                run_cell, run_params, run_xs = cell, dir_params, h
                if stochastic:
                    # Folded in, not split off, so that the between-layer
                    # dropout draws the same masks with these options or not.
                    sub = None if key is None else jax.random.fold_in(key, 1 + 2 * layer + d)
                    run_cell, run_params, run_xs = _recurrent_dropout(
                        cell, dir_params, h, sub, time_major=time_major, **inside
                    )
                o, c = unroll_cell(
                    run_cell,
                    run_params,
                    run_xs,
                    c0,
                    lengths=lengths,
                    resets=resets,
                    reverse=rev,
                    method=method,
                    projection=projection,
                    unroll=unroll,
                    remat=remat,
                    time_major=time_major,
                )
                outs.append(o)
                finals.append(c)
            h = outs[0] if directions == 1 else jnp.concatenate(outs, axis=-1)
            if dropout > 0.0 and key is not None and layer < num_layers - 1:
                key, sub = jax.random.split(key)
                keep = jax.random.bernoulli(sub, 1.0 - dropout, h.shape)
                h = jnp.where(keep, h / (1.0 - dropout), jnp.zeros_like(h))
        return h, _stack(finals)

    net = Recurrent(
        init=init,
        apply=apply,
        initial_carry=initial_carry,
        cell=cell,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=dropout,
        time_major=time_major,
        input_dropout=inside["input_rate"],
        recurrent_dropout=inside["recurrent_rate"],
        zoneout=inside["zoneout"],
        state_noise=inside["state_noise"],
    )
    return net

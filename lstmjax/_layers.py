"""Stacked and bidirectional recurrent layers, PyTorch-shaped."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._array_checks import check_key
from lstmjax._cell import Cell, check_cell, check_params
from lstmjax._checks import check_bool, check_rate, check_size
from lstmjax._methods import as_method
from lstmjax._recurrent_dropout import check_cell_options, check_key_or_deterministic, check_rates
from lstmjax._recurrent_dropout import recurrent_dropout as _recurrent_dropout
from lstmjax._typing import Array, Carry, Params, PRNGKey
from lstmjax._unroll import MethodArg
from lstmjax._unroll import unroll as unroll_cell


class LayerParams(NamedTuple):
    """One layer of a `recurrent` net: the forward direction and the backward one (or None)."""

    forward: Params  # the cell's parameters for the forward direction
    backward: Optional[Params] = None  # the reverse direction (bidirectional only)


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
    time_major: bool = False,
    method: MethodArg = "auto",
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
    last, as PyTorch does, when `apply` gets a `key`; so it needs
    `num_layers >= 2` (a one-layer net with `dropout > 0` is refused: it
    would never drop anything).

    Inside the recurrence of every layer and direction (see
    `lstmjax.recurrent_dropout` for the exact rules), with a `key`:
    `input_dropout` and `recurrent_dropout` are variational (Gal & Ghahramani
    2016: one mask per sequence on the layer's inputs and one on h_{t-1}, the
    same at every step), `zoneout` keeps each carry unit's previous value
    with that probability at every step (Krueger et al. 2017), and
    `state_noise` adds Gaussian noise of that standard deviation to the carry
    after every step.

    Training or evaluation is always said explicitly: a net with any of
    these rates above 0 must get either a `key` (training) or
    `deterministic=True` (evaluation: no dropout, no noise, zoneout by its
    expected update) in `apply`; neither is an error, so that a forgotten
    key never trains silently without dropout. With every rate 0 (default)
    neither is needed. A rate that would mean nothing for
    `cell` is refused here (see `lstmjax.recurrent_dropout`).

    Args:
      cell: the cell of every layer.
      num_layers: depth of the stack.
      bidirectional: run a second, reversed copy of each layer.
      dropout: drop rate between layers, in [0, 1); above 0 only with
        `num_layers >= 2`.
      time_major: the layout of `xs` and `o`, as above.
      method: passed to `lstmjax.unroll` for every layer and direction
        ("auto", a shorthand such as "scan", or an option object such as
        `lj.Scan(remat=True)`).
      input_dropout: a rate in [0, 1).
      recurrent_dropout: a rate in [0, 1).
      zoneout: a rate in [0, 1).
      state_noise: a standard deviation >= 0. (Every rate is a concrete
        number: the net is built outside `jit`.)

    Returns:
      A `Recurrent` net (a value: equal configurations are equal) with
      `init(key, input_size)`, `apply(params, xs, carry=None, *, lengths=None,
      mask=None, resets=None, key=None, deterministic=False)` and
      `initial_carry(batch)`.
    """
    cell = check_cell(cell, "recurrent")
    num_layers = check_size("num_layers", num_layers)
    dropout = check_rate("dropout", dropout, what="the net")
    if dropout > 0 and num_layers == 1:
        raise ValueError(
            f"recurrent: dropout={dropout} acts between layers, and a net of num_layers=1 "
            "has none: it would never drop anything. Use num_layers >= 2, or "
            "input_dropout= / recurrent_dropout= for dropout inside the one layer, or "
            "dropout on its outputs in your own code."
        )
    inside = check_rates(
        input_dropout=input_dropout,
        recurrent_dropout=recurrent_dropout,
        zoneout=zoneout,
        state_noise=state_noise,
    )
    check_cell_options(
        cell, inside["recurrent_dropout"], inside["zoneout"], inside["state_noise"], "recurrent"
    )
    return Recurrent(
        cell=cell,
        num_layers=num_layers,
        bidirectional=check_bool("bidirectional", bidirectional),
        dropout=dropout,
        time_major=check_bool("time_major", time_major),
        method=as_method(method, "recurrent"),
        **inside,
    )


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Recurrent:
    """A stack of recurrent layers (built by `lj.recurrent`): a value with pure methods.

    Its fields (`cell`, `num_layers`, `bidirectional`, `dropout`, `time_major`,
    `method`, `input_dropout`, `recurrent_dropout`, `zoneout`, `state_noise`) hold
    the configuration `recurrent` was called with; see `lj.recurrent`.
    """

    cell: Cell
    num_layers: int
    bidirectional: bool
    dropout: float
    time_major: bool
    method: Any
    input_dropout: float
    recurrent_dropout: float
    zoneout: float
    state_noise: float

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _rates(self) -> dict[str, float]:
        """Every option that draws randomness, by name (for `apply`'s key check)."""
        return {
            "dropout": self.dropout,
            "input_dropout": self.input_dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "zoneout": self.zoneout,
            "state_noise": self.state_noise,
        }

    def init(self, key: PRNGKey, input_size: int) -> tuple[LayerParams, ...]:
        """`(key, input_size) -> params`, a tuple of `LayerParams`, one per layer."""
        input_size = check_size("input_size", input_size)
        layers = []
        for k in jax.random.split(key, self.num_layers):
            kf, kb = jax.random.split(k)
            layers.append(
                LayerParams(
                    forward=self.cell.init(kf, input_size),
                    backward=self.cell.init(kb, input_size) if self.bidirectional else None,
                )
            )
            input_size = self.directions * self.cell.output_size
        return tuple(layers)

    def initial_carry(self, batch: int) -> Carry:
        """`(batch) -> carry` of zeros in PyTorch's layout."""
        one = self.cell.initial_carry((check_size("initial_carry: batch", batch, minimum=0),))
        return _stack([one] * (self.num_layers * self.directions))

    def apply(
        self,
        params: tuple[LayerParams, ...],
        xs: Array,
        carry: Optional[Carry] = None,
        *,
        lengths: Optional[Array] = None,
        mask: Optional[Array] = None,
        resets: Optional[Array] = None,
        key: Optional[PRNGKey] = None,
        deterministic: bool = False,
    ) -> tuple[Array, Carry]:
        """xs: `[batch, time, features]` (or time-major) -> `(o, carry)` as in `lj.recurrent`.

        `lengths`, `mask` and `resets` are those of `lstmjax.unroll`, applied
        to every layer and both directions.

        `key` trains: it turns dropout, zoneout and state noise on.
        `deterministic=True` evaluates: they are off (zoneout by its expected
        update). A net with any of them must get one of the two (not both);
        a net without them needs neither (a key is then unused). Under
        `jax.jit`, `deterministic` is a static argument
        (`jax.jit(net.apply, static_argnames="deterministic")`).

        Raises:
          ValueError: the net has a rate above 0 and got neither a key nor
            `deterministic=True`, or got both.
        """
        if jnp.ndim(xs) >= 1:
            check_net_params(self, params, jnp.shape(xs)[-1], "recurrent.apply")
        check_key_or_deterministic("recurrent.apply", key, deterministic, self._rates())
        if key is not None:
            key = check_key(key, "recurrent.apply")
        n = self.num_layers * self.directions
        if carry is not None:
            leading = {jnp.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(carry)}
            if leading != {n}:
                raise ValueError(
                    f"carry leaves must have leading size num_layers * directions = {n}; "
                    f"got {sorted(leading)}."
                )
        inside = dict(
            input_dropout=self.input_dropout,
            recurrent_dropout=self.recurrent_dropout,
            zoneout=self.zoneout,
            state_noise=self.state_noise,
        )
        stochastic = any(v > 0 for v in inside.values())
        finals = []
        h = xs
        for layer, p in enumerate(params):
            outs = []
            for d, (dir_params, rev) in enumerate(((p.forward, False), (p.backward, True))):
                if d >= self.directions:
                    break
                c0 = None if carry is None else _split(carry, layer * self.directions + d)
                run_cell, run_params, run_xs = self.cell, dir_params, h
                if stochastic:
                    # Folded in, not split off, so that the between-layer
                    # dropout draws the same masks with these options or not.
                    sub = None if key is None else jax.random.fold_in(key, 1 + 2 * layer + d)
                    run_cell, run_params, run_xs = _recurrent_dropout(
                        self.cell,
                        dir_params,
                        h,
                        key=sub,
                        time_major=self.time_major,
                        deterministic=sub is None,
                        **inside,
                    )
                o, c = unroll_cell(
                    run_cell,
                    run_params,
                    run_xs,
                    c0,
                    lengths=lengths,
                    mask=mask,
                    resets=resets,
                    reverse=rev,
                    time_major=self.time_major,
                    method=self.method,
                )
                outs.append(o)
                finals.append(c)
            h = outs[0] if self.directions == 1 else jnp.concatenate(outs, axis=-1)
            if self.dropout > 0.0 and key is not None and layer < self.num_layers - 1:
                key, sub = jax.random.split(key)
                keep = jax.random.bernoulli(sub, 1.0 - self.dropout, h.shape)
                h = jnp.where(keep, h / (1.0 - self.dropout), jnp.zeros_like(h))
        return h, _stack(finals)

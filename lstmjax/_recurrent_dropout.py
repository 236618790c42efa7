"""Dropout inside the recurrence: variational (same-mask) dropout, zoneout, state noise.

    cell', params', xs' = recurrent_dropout(cell, params, xs, key=key, recurrent_dropout=0.25)
    ys, carry = lj.unroll(cell', params', xs', lengths=lengths)   # any unroll option

`lj.recurrent(..., input_dropout=, recurrent_dropout=, zoneout=, state_noise=)`
calls this for every layer and direction. The randomness of every step is
drawn here, once, for the whole batch: the per-sequence masks (constant over
time) and the per-step masks and noise are appended to the inputs as extra
feature channels, which the wrapped cell splits off again inside each step.
So `unroll` needs to know nothing of dropout: lengths, resets, reverse,
remat and the input-projection placement act on the wrapped cell exactly as
on any other (a reset restores the carry, not the masks: each sequence keeps
one mask over all its episodes), and the final carry has the cell's own
structure. The wrapped params are `MaskedParams(inner=params)`, so the
gradient with respect to them is `grads.inner`, of the cell's own type.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._array_checks import as_array, check_float, check_key, check_rank
from lstmjax._cell import Cell, WrappedCell, check_cell
from lstmjax._checks import (
    check_bool,
    check_nonnegative,
    check_rate,
)
from lstmjax._typing import Array, Carry, Params, PRNGKey


class MaskedParams(NamedTuple):
    """A cell's parameters wrapped with the per-sequence dropout masks and noise."""

    inner: Params  # the wrapped cell's own parameters, unchanged


def _h(carry: Carry) -> Array:
    """The part of a carry that is the cell's output h (the whole carry when it is an array)."""
    return carry.h if hasattr(carry, "h") else carry


def _with_h(carry: Carry, h: Array) -> Carry:
    return carry._replace(h=h) if hasattr(carry, "h") else h


def _check_carry_kind(cell: Cell, where: str):
    """Leaf sizes of the cell's carry; it must be an array or a NamedTuple with an `h` field."""
    carry = jax.eval_shape(lambda: cell.initial_carry((1,)))
    if not (isinstance(carry, jax.ShapeDtypeStruct) or hasattr(carry, "h")):
        raise TypeError(
            f"{where}: recurrent dropout and zoneout need a carry that is an array h or a "
            f"NamedTuple with an h field (as lj.lstm's); cell {cell.name!r} has "
            f"{type(carry).__name__}."
        )
    if _h(carry).shape[-1] != cell.output_size:
        raise ValueError(
            f"{where}: cell {cell.name!r} outputs {cell.output_size} features but its h has "
            f"{_h(carry).shape[-1]}; zoneout and state noise act on h and need y = h."
        )
    return tuple(leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(carry))


def check_cell_options(
    cell: Cell, recurrent_dropout: float, zoneout: float, state_noise: float, where: str
) -> None:
    """Refuse an option that would do nothing to `cell`, or not what it says."""
    if recurrent_dropout > 0 and not cell.reads_h:
        raise ValueError(
            f"{where}: recurrent_dropout acts on h_(t-1) as the step reads it, but no gate "
            f"of cell {cell.name!r} reads h_(t-1) (its gates read x_t alone), so it would do "
            f"nothing; got recurrent_dropout={recurrent_dropout}. Use input_dropout."
        )
    if (zoneout > 0 or state_noise > 0) and cell.scaled_carry:
        raise ValueError(
            f"{where}: cell {cell.name!r} keeps its memories scaled by exp(-m) with a "
            f"stabiliser m, so zoneout and state_noise, which keep or perturb each carry unit "
            f"on its own, would not mean what they say; got zoneout={zoneout}, "
            f"state_noise={state_noise}. Use input_dropout or dropout between layers."
        )


def recurrent_dropout(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    key: Optional[PRNGKey] = None,
    input_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    state_noise: float = 0.0,
    time_major: bool = False,
    deterministic: bool = False,
) -> tuple[Cell, Params, Array]:
    """`(cell, params, xs)` with dropout inside the recurrence, for `lj.unroll`.

    With a `key` (training):
      input_dropout: variational dropout of the inputs (Gal & Ghahramani 2016):
        one mask `[batch, features]` per sequence, the same at every step,
        x_t -> x_t * m / (1 - rate).
      recurrent_dropout: variational dropout of the recurrent state: one mask
        `[batch, h size]` per sequence, the same at every step, applied to
        h_{t-1} as the step reads it (for the LSTM, the h of `LSTMCarry(h, c)`,
        so only h W_h is affected, as in Gal & Ghahramani; for cells whose h
        also enters their update directly, the GRU's z h_{t-1} and the CT-RNN's
        leak, it is dropout of that state too).
      zoneout: Krueger et al. (2017): each unit of every carry leaf (h and c
        for the LSTM) keeps its previous value with probability `zoneout`,
        drawn afresh at every step: h_t = d * h_{t-1} + (1 - d) * h~_t.
      state_noise: Gaussian noise of this standard deviation added to every
        carry leaf after each step, drawn afresh at every step (the CT-RNN's
        recurrent noise: sqrt(2 dt / tau) * sigma for Song et al.'s sigma).
    Masks and noise are independent across sequences and steps (the two
    variational masks across sequences only).
    Refused, rather than silently meaningless: `recurrent_dropout` for a cell
    whose gates never read h_{t-1} (`lj.mlstm`), and `zoneout` or
    `state_noise` for a cell that keeps its memories scaled by a stabiliser
    (`lj.slstm`, `lj.mlstm`; `Cell.reads_h`, `Cell.scaled_carry`).

    With `deterministic=True` and no key (evaluation): dropout and noise
    are off, and zoneout uses its expected update h_t = zoneout * h_{t-1} +
    (1 - zoneout) * h~_t (Krueger et al.'s evaluation rule). With zoneout = 0
    the returned triple is then `(cell, params, xs)` itself: exactly the
    deterministic pass.

    A rate above 0 with neither a key nor `deterministic=True` is an error,
    so that forgetting the key never trains silently without dropout; with
    every rate 0 (default) neither is needed.

    Args:
      cell: a cell.
      params: its parameters.
      xs: `[batch, time, features]` (or `[time, batch, features]` with
        `time_major=True`).
      key: a `jax.random` key (training), or None.
      input_dropout: the rate of the input mask, in [0, 1), concrete.
      recurrent_dropout: the rate of the mask on h_{t-1}, in [0, 1), concrete.
      zoneout: the rate at which a unit keeps its previous value, in [0, 1),
        concrete.
      state_noise: a standard deviation >= 0, concrete.
      time_major: the layout of `xs`.
      deterministic: evaluate: no key, dropout and noise off, zoneout by its
        expectation. A Python bool (under `jit`, a static argument).

    Returns:
      `(cell', params', xs')` to pass to `lj.unroll` (with the same
      `time_major`), and only that `xs'`: with a key, `xs'` carries the
      masks as extra feature channels and `cell'` refuses inputs of any
      other width. `params' = MaskedParams(params)` when a key is given,
      else `params`. The outputs and final carry are those of `cell`.

    Raises:
      ValueError: a rate above 0 without a key or `deterministic=True`, or
        a key together with `deterministic=True`.
    """
    where = "recurrent_dropout"
    cell = check_cell(cell, where)
    rates = check_rates(
        input_dropout=input_dropout,
        recurrent_dropout=recurrent_dropout,
        zoneout=zoneout,
        state_noise=state_noise,
    )
    input_dropout, recurrent_dropout, zoneout, state_noise = rates.values()
    time_major = check_bool("time_major", time_major)
    check_key_or_deterministic(where, key, deterministic, rates)
    xs = as_array(xs, "xs")
    check_float(xs, "xs")
    check_rank(xs, 3, "[time, batch, features]" if time_major else "[batch, time, features]", where)
    check_cell_options(cell, recurrent_dropout, zoneout, state_noise, where)
    sizes = _check_carry_kind(cell, where)
    if key is None:
        return (cell if zoneout == 0.0 else ExpectedZoneoutCell(cell, zoneout)), params, xs
    key = check_key(key, where)

    batch_axis, time_axis = (1, 0) if time_major else (0, 1)
    B, T = xs.shape[batch_axis], xs.shape[time_axis]
    k_in, k_rec, k_zone, k_noise = jax.random.split(key, 4)

    def per_step(a):  # [B, n] -> [B, T, n] or [T, B, n]
        a = jnp.broadcast_to(a[:, None, :], (B, T, a.shape[-1]))
        return jnp.swapaxes(a, 0, 1) if time_major else a

    def per_sequence_mask(k, rate, n):
        keep = jax.random.bernoulli(k, 1.0 - rate, (B, n))
        return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(xs.dtype)

    if input_dropout > 0.0:
        m = per_step(per_sequence_mask(k_in, input_dropout, xs.shape[-1]))
        xs = xs * m
    channels, split = [], []
    if recurrent_dropout > 0.0:
        channels.append(per_step(per_sequence_mask(k_rec, recurrent_dropout, sizes[0])))
        split.append(("recurrent", (sizes[0],)))
    shape = (T, B, sum(sizes)) if time_major else (B, T, sum(sizes))
    if zoneout > 0.0:
        channels.append(jax.random.bernoulli(k_zone, zoneout, shape).astype(xs.dtype))
        split.append(("zoneout", sizes))
    if state_noise > 0.0:
        channels.append((state_noise * jax.random.normal(k_noise, shape)).astype(xs.dtype))
        split.append(("noise", sizes))
    if not channels:
        return cell, params, xs
    masked = MaskedCell(cell, tuple(split), xs.shape[-1])
    return masked, MaskedParams(params), jnp.concatenate([xs, *channels], -1)


def check_rates(**rates) -> dict[str, float]:
    """The rates in [0, 1) and `state_noise` >= 0, each concrete (they fix the wrapped cell)."""
    out = {}
    for name, value in rates.items():
        if name == "state_noise":
            value = check_nonnegative(name, value, what="the dropout masks")
        else:
            value = check_rate(name, value, what="the dropout masks")
        out[name] = value
    return out


def check_key_or_deterministic(where: str, key, deterministic, rates: dict[str, float]) -> bool:
    """A key (training) or `deterministic=True` (evaluation) when a rate is above 0; not both.

    Returns `deterministic` as a bool.
    """
    deterministic = check_bool(
        "deterministic",
        deterministic,
        how="Under jax.jit pass it as a static argument, e.g. jax.jit(net.apply, "
        "static_argnames='deterministic'), or close over it.",
    )
    if key is not None and deterministic:
        raise ValueError(
            f"{where}: got a key and deterministic=True; a key turns dropout on, "
            "deterministic=True turns it off. Pass the key to train, or deterministic=True "
            "without a key to evaluate."
        )
    active = [f"{name}={value}" for name, value in rates.items() if value > 0]
    if key is None and active and not deterministic:
        raise ValueError(
            f"{where}: {', '.join(active)} but no key, so nothing would be dropped or drawn. "
            "Pass key=... to train with it, or deterministic=True to evaluate without it "
            "(dropout and noise off, zoneout by its expected update)."
        )
    return deterministic


def _leaf_split(a: Array, sizes: tuple[int, ...]) -> list[Array]:
    offsets = [sum(sizes[:i]) for i in range(1, len(sizes))]
    return jnp.split(a, offsets, axis=-1)


@dataclasses.dataclass(frozen=True)
class MaskedCell(WrappedCell):
    """`cell` reading its per-step masks from E extra input channels (see the module docstring).

    `split` names the channels in order: `(("recurrent", (h size,)),
    ("zoneout", carry leaf sizes), ("noise", carry leaf sizes))`, each present
    only when its option is on. `features` is the width of the inputs the
    masks were drawn for; the cell takes `features + extra` input channels
    and refuses any other width (e.g. the original `xs`, without the masks).
    """

    split: tuple[tuple[str, tuple[int, ...]], ...]
    features: int

    # linear_in_carry is the inner cell's: masks, selects and noise keep a step affine.

    @property
    def extra(self) -> int:
        """E, the number of extra input channels."""
        return sum(sum(sizes) for _, sizes in self.split)

    def init(self, key, input_size: int) -> MaskedParams:
        expected = self.features + self.extra
        if input_size != expected:
            raise ValueError(
                f"recurrent_dropout: the cell it returned reads inputs of {expected} features "
                f"(the {self.features} of xs and {self.extra} mask channels); got {input_size}. "
                "Pass lj.unroll the xs that recurrent_dropout returned with the cell "
                "(cell', params', xs'), not the original xs."
            )
        return MaskedParams(self.cell.init(key, self.features))

    def project(self, params: MaskedParams, x: Array) -> Array:
        E = self.extra
        px = self.cell.project(params.inner, x[..., :-E])
        return jnp.concatenate([px, x[..., -E:].astype(px.dtype)], axis=-1)

    def recur(self, params: MaskedParams, carry: Carry, pxe: Array):
        E = self.extra
        px, rest = pxe[..., :-E], pxe[..., -E:]
        parts = {}
        for name, sizes in self.split:
            parts[name], rest = _leaf_split(rest[..., : sum(sizes)], sizes), rest[..., sum(sizes) :]
        read = carry
        if "recurrent" in parts:
            read = _with_h(carry, _h(carry) * parts["recurrent"][0])
        new, _ = self.cell.recur(params.inner, read, px)
        old_leaves, treedef = jax.tree_util.tree_flatten(carry)
        leaves = jax.tree_util.tree_leaves(new)
        if "zoneout" in parts:
            leaves = [
                jnp.where(d > 0, o, n)
                for d, o, n in zip(parts["zoneout"], old_leaves, leaves, strict=True)
            ]
        if "noise" in parts:
            leaves = [n + e.astype(n.dtype) for e, n in zip(parts["noise"], leaves, strict=True)]
        new = jax.tree_util.tree_unflatten(treedef, leaves)
        return new, self.output(new)


@dataclasses.dataclass(frozen=True)
class ExpectedZoneoutCell(WrappedCell):
    """Zoneout's evaluation rule: every carry leaf moves (1 - rate) of the way to its update."""

    rate: float

    # linear_in_carry is the inner cell's: a convex mix with the old carry keeps it affine.

    def recur(self, params: Params, carry: Carry, px: Array):
        new, _ = self.cell.recur(params, carry, px)
        rate = self.rate
        new = jax.tree_util.tree_map(lambda o, n: rate * o + (1.0 - rate) * n, carry, new)
        return new, self.output(new)

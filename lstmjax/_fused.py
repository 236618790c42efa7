"""The strategy `Fused`: the whole sequence in one compiled CPU kernel (plain LSTM, GRU).

`lj.Fused()` runs the LSTM (with or without peepholes) without layer norm or
projection, and the GRU without layer norm, with the reset after the matmul
(`reset_after=True`, PyTorch's and cuDNN's form) or before it
(`reset_after=False`, Cho et al.'s), through the fused kernels of
`_fused_kernel.py`: one call per sequence for the forward pass, and one for
its backward pass (BPTT), each splitting the batch over XLA's CPU threads.
Same results as `lj.Scan()` (float32 and float64; the float32 rounding
differs, within about 1e-6 relative). `lengths`, `mask`, `resets` and
`reverse` are covered: `unroll` turns lengths and mask into one step mask
and reverses the sequences before any strategy sees them, and the kernel
takes the step mask and the resets together as step flags
(`_fused_kernel.encode_flags`), applying them as the scan does.

Where the kernel cannot run a call, the call runs `fallback` (a `Scan`, by
default `lj.Scan()`), after one warning per reason in the process
(`FusedFallbackWarning`) saying why:

- the compiled extension is absent (not built at install) or cannot load;
- the arrays are not on the CPU, or more than one CPU device is visible (with
  `jax_num_cpu_devices`, or several processes): the kernel's call has no
  partitioning rule, so under a sharded `jax.jit` XLA would gather the whole
  batch onto every device, each computing all of it;
- the cell or its options are not covered (any other cell; layer norm, an
  LSTM's projection);
- a dtype other than float32 or float64;
- the call is being differentiated in forward mode (`jax.jvp`,
  `jax.jacfwd`, `jax.hessian`), seen at `unroll`'s door: the scan computes
  derivatives of every order. Forward mode applied outside a `jax.jit`
  that contains the call cannot be seen there; the kernel's own rules
  (`_fused_ad.py`) serve it, with the scan's tangents, to any order.

A program that contains the kernel cannot be serialized with `jax.export`
(JAX refuses custom calls without compatibility guarantees); export the
scan (`method=lj.Scan()`).

The decision is made once per call at `unroll`'s door (`resolve`), so the
strategy that reaches the compiled program is either a runnable `Fused` or
the fallback scan. The method "auto" chooses `Fused()` on the CPU for the
calls the kernel runs, silently, and the scan for the others.
`jax.vmap` over a `Fused` call gives the kernel the batched axis as members:
one call runs every member in turn (`_fused_kernel.py`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
from jax.core import Tracer

from lstmjax import _fused_ad, _fused_kernel
from lstmjax._cell import Cell
from lstmjax._checks import check_size
from lstmjax._gru import GRUCell
from lstmjax._lstm import LSTMCell
from lstmjax._scan import Scan
from lstmjax._sequence import Sequences
from lstmjax._typing import Array, Carry, Params


class FusedFallbackWarning(UserWarning):
    """`lj.Fused` ran its fallback scan: the fused kernel cannot run this call (says why)."""


class Call(NamedTuple):
    """What `unroll`'s door knows of a call that decides whether the kernel can run it."""

    dtype: Any  # the computation's dtype (of xs and params together)
    forward_mode: bool  # the inputs carry forward-mode tangents


# Reasons already announced in this process: one warning per reason.
_ANNOUNCED: set[str] = set()


@dataclasses.dataclass(frozen=True)
class Fused:
    """The fused CPU kernel: the whole sequence in one compiled call (plain LSTM and GRU).

    Runs `lj.lstm` (peepholes or not) without layer norm or projection, and `lj.gru`
    without layer norm (either `reset_after`), on CPU arrays in float32
    or float64, with `lengths`, `mask`, `resets` and `reverse`; forward and BPTT are
    the kernel's, each splitting the batch over XLA's CPU threads. Same
    results as `lj.Scan()` (float32 rounding differs within ~1e-6 relative).
    Any other call (the extension not built, other devices, cells or
    options, forward-mode AD, other dtypes) runs `fallback`, with
    a `FusedFallbackWarning` saying why, once per reason in the process.
    Under `jax.vmap` one kernel call runs every member in turn.

    Attributes:
      threads: how many parts the batch is split into, each run on its own
        thread of XLA's CPU pool: "auto" (default: the pool's size, at most
        one part per 4 sequences) or an int >= 1 (1: the calling thread only).
      fallback: the `lj.Scan(...)` run where the kernel cannot run a call
        (see the module docstring; a `FusedFallbackWarning` says why, once
        per reason). Default `lj.Scan()`.
    """

    threads: Union[str, int] = "auto"
    fallback: Scan = dataclasses.field(default_factory=Scan)

    def __post_init__(self):
        if self.threads != "auto":
            try:
                check_size("Fused: threads", self.threads)
            except (TypeError, ValueError):
                raise ValueError(
                    f"Fused: threads must be 'auto' or an int >= 1; got {self.threads!r}."
                ) from None
        if not isinstance(self.fallback, Scan):
            raise TypeError(
                f"Fused: fallback must be an lj.Scan(...) option object; got {self.fallback!r}."
            )

    @staticmethod
    def unavailable() -> str:
        """Why the compiled kernel cannot run in this process ("" when it can)."""
        return _fused_kernel.load()[1]

    def resolve(self, platform: str, cell: Cell, call: Call) -> Union[Fused, Scan]:
        """This strategy if the kernel can run the call, else the resolved fallback (warned)."""
        reason = unsupported(platform, cell, call)
        if reason:
            announce(reason, self.fallback)
            return self.fallback.resolve(platform)
        return self

    def run(self, cell: Cell, params: Params, seq: Sequences) -> tuple[Array, Carry, None]:
        """`(ys [T, B, H], carry, None)` (a call `resolve` accepted)."""
        threads = 0 if self.threads == "auto" else int(self.threads)
        _fused_kernel.require()
        weights, carry0 = _fused_ad.to_operands(cell, params, seq.carry0)
        dtype = jnp.result_type(seq.xs, *weights, *carry0)
        cast = lambda arrays: tuple(jnp.asarray(a, dtype) for a in arrays)  # noqa: E731
        flags = _fused_kernel.encode_flags(seq.valid, seq.reset)
        has_flags = flags is not None
        ys, carry = _fused_ad.sequence(cell, threads, has_flags)(
            jnp.asarray(seq.xs, dtype), cast(weights), cast(carry0),
            flags if has_flags else jnp.zeros((1,), jnp.uint8),
        )  # fmt: skip
        if seq.valid is not None:  # masked steps: the kernel leaves the kept h, the scan zero
            ys = jnp.where(seq.valid[..., None], ys, jnp.zeros_like(ys))
        return ys, _fused_ad.from_operands(cell, weights, carry)[1], None


def unsupported(platform: str, cell: Cell, call: Call) -> str:
    """Why the kernel cannot run this call ("" when it can)."""
    _, why = _fused_kernel.load()
    if why:
        return why
    if platform != "cpu":
        return f"the arrays are on {platform!r} and the fused kernel runs on the CPU only"
    devices = jax.device_count(platform)
    if devices > 1:
        return (
            f"{devices} CPU devices are visible, and its call is not partitioned: under a "
            "sharded jax.jit XLA would gather the whole batch onto every device"
        )
    if isinstance(cell, LSTMCell):
        extras = [
            name
            for name, on in (
                ("layer_norm=True", cell.layer_norm),
                ("proj_size", cell.proj_size is not None),
            )
            if on
        ]
        if extras:
            return (
                "it covers the LSTM without layer norm or projection, and this one has "
                + ", ".join(extras)
            )
    elif isinstance(cell, GRUCell):
        if cell.layer_norm:
            return "it covers the GRU without layer norm only"
    else:
        return f"it covers lj.lstm and lj.gru only, not {type(cell).__name__} ({cell.name})"
    if jnp.dtype(call.dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        return f"it computes in float32 or float64, not {jnp.dtype(call.dtype).name}"
    if call.forward_mode:
        return (
            "it is differentiated in forward mode (jax.jvp, jax.jacfwd, jax.hessian), whose "
            "derivatives of every order the scan computes"
        )
    return ""


def announce(reason: str, fallback: Scan) -> None:
    """Warn once per reason in this process that `fallback` runs instead of the kernel."""
    if reason in _ANNOUNCED:
        return
    _ANNOUNCED.add(reason)
    warnings.warn(
        f"lj.Fused cannot run this call: {reason}. Running {fallback!r} instead (the same "
        "results, computed by the scan). This warning is given once per reason.",
        FusedFallbackWarning,
        stacklevel=6,
    )


def forward_mode(*trees) -> bool:
    """Whether any leaf carries a forward-mode tangent (a `jax.jvp`-family trace) now.

    Reverse mode (`grad`, `vjp`, `linearize`) traces with other tracers, and
    `vmap` and `jit` wrap without hiding an outer JVP tracer's primal chain.
    """
    for leaf in jax.tree_util.tree_leaves(trees):
        x = leaf
        for _ in range(64):  # the depth of nested transformations
            if not isinstance(x, Tracer):
                break
            if type(x).__name__ == "JVPTracer":
                return True
            x = getattr(x, "primal", getattr(x, "val", None))
    return False

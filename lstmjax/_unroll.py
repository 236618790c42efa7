"""`unroll`: run a cell over a batch of sequences; the one public entry for time.

`unroll` checks its inputs once, prepares the sequences (time-major layout,
masks from `lengths` and `resets`, reverse within lengths: `_sequence.py`)
and delegates to a strategy, which returns `(ys, carry)` in processing order:

- "scan": the sequential `lax.scan` (`_scan.py`), with the input projection
  placed per device (`_placement.py`) and optional gradient checkpointing;
- "affine": the exact parallel pass of cells affine in the carry
  (`_linear_unroll.py`, on `_affine_scan.py`);
- "newton", "quasi_newton", "elk": parallel-in-time solvers (`_newton.py`).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from lstmjax import _linear_unroll, _newton, _scan, _sequence, _unroll_parallel
from lstmjax._affine_scan import ALGORITHMS
from lstmjax._cell import Array, Carry, Cell, Params, check_carry, check_cell, check_params
from lstmjax._checks import (
    as_array,
    check_bool,
    check_choice,
    check_float,
    check_lengths,
    check_linear_in_carry,
    check_optional_size,
    check_rank,
    check_remat,
    check_resets,
    check_size,
)
from lstmjax._placement import resolve_placement

METHODS = ("auto", "scan", "affine", "newton", "quasi_newton", "elk")


def initial_carry(cell: Cell, carry, batch: int, dtype, where: str) -> Carry:
    """The checked initial carry (zeros when None), cast to the computation dtype."""
    expected = jax.eval_shape(lambda: cell.initial_carry((batch,)))
    if carry is None:
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, dtype), expected)
    carry = check_carry(carry, expected, where)
    return jax.tree_util.tree_map(lambda c: jnp.asarray(c, dtype), carry)


def resolve_method(method: str, cell: Cell) -> str:
    """ "auto" -> "affine" for cells affine in the carry, else "scan"."""
    if method == "auto":
        return "affine" if cell.linear_in_carry else "scan"
    return method


def checked_inputs(cell, params, xs, carry, lengths, resets, reverse, time_major, where):
    """Check once and prepare: `(Sequences, T, B, dtype, lengths)` (shared with unroll_parallel)."""
    cell = check_cell(cell, where)
    xs = as_array(xs, "xs")
    check_float(xs, "xs")
    layout = "[time, batch, features]" if time_major else "[batch, time, features]"
    check_rank(xs, 3, layout, where)
    check_bool("reverse", reverse)
    check_bool("time_major", time_major)
    xs_t = xs if time_major else jnp.swapaxes(xs, 0, 1)  # [T, B, F]
    T, B, F = xs_t.shape
    check_params(cell, params, F, where)
    dtype = jnp.result_type(xs_t, *jax.tree_util.tree_leaves(params))
    carry0 = initial_carry(cell, carry, B, dtype, where)
    if lengths is not None:
        lengths = check_lengths(lengths, B, T, where)
    if resets is not None:
        resets = check_resets(resets, B, T, where)
    return _sequence.prepare(xs_t, carry0, lengths, resets, reverse), T, B, dtype, lengths


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Optional[Carry] = None,
    *,
    lengths: Optional[Array] = None,
    resets: Optional[Array] = None,
    reverse: bool = False,
    time_major: bool = False,
    method: str = "auto",
    projection: str = "auto",
    column_blocks: str | bool = "auto",
    unroll: int = 1,
    remat: bool | int = False,
    max_iters: Optional[int] = None,
    tol: Optional[float] = None,
    damping: float = 0.01,
    jacobian_limit: int = _unroll_parallel.DEFAULT_JACOBIAN_LIMIT,
    affine_algorithm: str = "auto",
    affine_chunk: Optional[int] = None,
) -> tuple[Array, Carry]:
    """Run `cell` over a batch of sequences.

    Backpropagation through time is `jax.grad` through this function.

    Args:
      cell: a `Cell` (`lj.rnn(H)`, `lj.lstm(H)`, `lj.gru(H)`, `lj.jordan(H, O)`, ...).
      params: the cell's parameters, checked against the cell (type, every
        shape) at trace time.
      xs: `[batch, time, features]`, or `[time, batch, features]` with
        `time_major=True`; a real floating-point dtype.
      carry: initial carry with leading shape `[batch]`; None means zeros.
      lengths: optional int `[batch]`, each in [0, T]. Past a sequence's
        length its carry stops changing and its outputs are zero, so the
        returned carry is the one after its last valid step. Whatever lies
        in the padding (even NaN or inf) changes no output and no gradient.
        Checked when concrete; under `jit`, values outside [0, T] act as if
        clipped to [0, T].
      resets: optional bool `[batch, time]`: where `resets[b, t]` holds,
        sequence b's carry is set back to its initial carry (`carry`, or
        zeros) before step t, as at the start of a new episode or document.
        A batch with resets equals running each segment on its own.
      reverse: run from the last step to the first. With `lengths`, each
        sequence is reversed within its own length (PyTorch's packed
        sequences), and outputs are returned in the original time order.
        With `resets`, each segment is run backward on its own (the carry is
        reset when the backward pass crosses a boundary).
      time_major: layout of `xs` and of the returned outputs.
      method: how the steps are evaluated (same results; speed, memory and
        depth differ):
        "auto" (default): "affine" for cells whose step is affine in the
          carry (`Cell.linear_in_carry`: `lj.min_gru`, `lj.min_lstm`),
          else "scan";
        "scan": the sequential `lax.scan` (depth T);
        "affine": the exact parallel pass of an affine cell (one affine
          scan, `_linear_unroll.py`);
        "newton" (DEER), "quasi_newton" (diagonal Jacobians), "elk"
          (damped quasi-Newton): a parallel-in-time solve (`_newton.py`)
          for any cell, exact at convergence. If it has not converged
          within `max_iters`, `unroll` raises RuntimeError naming the
          residual and the iterations; under `jit` (where nothing can be
          raised at run time) every output and carry entry is NaN instead.
          Use `lj.unroll_parallel` for the convergence report.
      projection: where the input projection `x_t W_x + b` is computed:
        "hoisted" (all steps at once before the loop), "per_step" (inside
        the loop) or "auto" (default: per step on CPU, hoisted on GPU/TPU,
        from the device the arrays live on; inside `jit`, the default
        backend). Same results either way; only speed and memory differ.
      column_blocks: close over mid-sized weights in column blocks (faster
        BPTT on XLA:CPU); "auto" (default: on CPU only), True or False.
      unroll: steps per scan iteration (`jax.lax.scan`'s `unroll`).
      remat: gradient checkpointing for long sequences. False: plain BPTT,
        every step's intermediates kept for the backward pass (memory ~ T).
        True: checkpoint every k = round(sqrt(T)) steps; an int: every k
        steps. Only the carries at segment boundaries are stored and each
        segment's forward is recomputed during the backward pass (memory
        ~ T/k + k steps, about 4/3 of the time). Same results and gradients.
      projection, column_blocks, unroll, remat: used by method="scan" only.
      max_iters, tol, damping, jacobian_limit: the parallel solvers'
        options, as in `lj.unroll_parallel` (max_iters None: T; tol None:
        by dtype; damping 0.01: ELK's lambda; jacobian_limit: bytes
        "newton" may use, default 2 GiB, beyond which it refuses).
      affine_algorithm: the affine scan of "affine" and the solvers:
        "auto" (sequential on CPU, associative elsewhere: what measured
        fastest), "sequential", "associative", "blocked", "log" ("affine"
        only: Feng et al.'s log-space form, valid without resets).
      affine_chunk: "affine" only: steps per chunk; each chunk's projection,
        coefficients and states are computed together (in cache) and
        recomputed in the backward pass. None (default): 512 on CPU (about
        2x faster training than one pass at T = 10,000), one chunk of the
        whole sequence elsewhere. Same results either way.

    Returns:
      `(ys, carry)`: `ys` `[batch, time, output_size]` (or time-major) and the
      final carry. With T = 0, `ys` is empty and `carry` the initial one.
    """
    check_choice("method", method, METHODS)
    check_choice("affine_algorithm", affine_algorithm, ALGORITHMS)
    check_size("unroll", unroll)
    check_optional_size("affine_chunk", affine_chunk)
    remat = check_remat(remat)
    seq, T, B, dtype, lengths = checked_inputs(
        cell, params, xs, carry, lengths, resets, reverse, time_major, "unroll"
    )
    method = resolve_method(method, cell)
    if method == "scan":
        hoisted, blocks = resolve_placement(projection, column_blocks, xs, params)
        ys_t, carry = _scan.scan(
            cell, params, seq, hoisted=hoisted, blocks=blocks, unroll=unroll, remat=remat
        )
    elif method == "affine":
        check_linear_in_carry(cell, "unroll")
        ys_t, carry = _linear_unroll.linear_unroll(
            cell, params, seq, affine_algorithm, affine_chunk
        )
    else:
        options = _unroll_parallel.make_options(
            method, max_iters, tol, damping, jacobian_limit, affine_algorithm, T, B,
            seq.carry0, dtype, "unroll",
        )  # fmt: skip
        ys_t, carry, info = _newton.solve(cell, params, seq, options)
        ys_t, carry = _unroll_parallel.raise_if_not_converged(info, ys_t, carry, method, "unroll")
    return _sequence.finish(ys_t, lengths, reverse, time_major), carry

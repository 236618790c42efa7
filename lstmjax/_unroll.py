"""`unroll` and `unroll_parallel`: run a cell over a batch of sequences, through one door.

Both check their inputs once, prepare the sequences (time-major layout,
per-step masks from `lengths`, `mask` and `resets`, reverse within lengths:
`_sequence.py`), resolve the method once from the platform of the arrays
(`_methods.py`) and hand the prepared sequences to the strategy, which
returns `(ys, carry, info)` in processing order.
"""

from __future__ import annotations

import functools
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax import _methods, _sequence
from lstmjax._array_checks import (
    MAX_LISTED,
    as_array,
    check_float,
    check_lengths,
    check_rank,
    check_step_flags,
)
from lstmjax._arrays import path_name, ravel
from lstmjax._cell import Cell, check_carry, check_cell, check_params, initial_carry_for
from lstmjax._checks import check_bool
from lstmjax._convergence import ParallelInfo, raise_if_not_converged
from lstmjax._fused import Call, forward_mode
from lstmjax._newton import Solver
from lstmjax._typing import Array, Carry, Params

MethodArg = Union[str, _methods.Method]


def _door(cell, params, xs, carry, lengths, mask, resets, reverse, time_major, method, where):
    """Check once and prepare (both public functions' door).

    Returns `(cell, strategy, inputs, reverse, time_major)`, the flags as Python bools.
    """
    cell = check_cell(cell, where)
    method = _methods.as_method(method, where)
    reverse = check_bool("reverse", reverse)
    time_major = check_bool("time_major", time_major)
    xs = as_array(xs, "xs")
    check_float(xs, "xs")
    layout = "[time, batch, features]" if time_major else "[batch, time, features]"
    check_rank(xs, 3, layout, where)
    xs_t = xs if time_major else jnp.swapaxes(xs, 0, 1)  # [T, B, F]
    T, B, F = xs_t.shape
    check_params(cell, params, F, where)
    dtype = jnp.result_type(xs_t, *jax.tree_util.tree_leaves(params))
    carry0 = initial_carry_for(cell, carry, B, dtype, where)
    if lengths is not None:
        lengths = check_lengths(lengths, B, T, where)
    if mask is not None:
        mask = check_step_flags(mask, B, T, time_major, where, "mask")
    if resets is not None:
        resets = check_step_flags(resets, B, T, time_major, where, "resets")
    call = Call(dtype=dtype, forward_mode=forward_mode(xs, params, carry))
    strategy = _methods.resolve(method, cell, _methods.platform_of(xs, params), call)
    return cell, strategy, (xs_t, carry0, lengths, mask, resets), reverse, time_major


@functools.partial(jax.jit, static_argnames=("cell", "strategy", "reverse", "time_major"))
def _evaluate(cell, strategy, inputs, params, guess, *, reverse: bool, time_major: bool):
    """The checked call, compiled once per (cell, strategy, shapes): equal cells and
    options share the program, also when `unroll` is called eagerly again and again."""
    xs_t, carry0, lengths, mask, resets = inputs
    seq = _sequence.prepare(xs_t, carry0, lengths, mask, resets, reverse)
    if guess is None:
        ys_t, carry, info = strategy.run(cell, params, seq)
    else:  # [T, B, N] in time order -> processing order, as the inputs
        guess = _sequence.to_processing_order(guess, lengths, reverse)
        ys_t, carry, info = strategy.run(cell, params, seq, guess)
    return _sequence.finish(ys_t, lengths, reverse, time_major), carry, info


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Optional[Carry] = None,
    *,
    lengths: Optional[Array] = None,
    mask: Optional[Array] = None,
    resets: Optional[Array] = None,
    reverse: bool = False,
    time_major: bool = False,
    method: MethodArg = "auto",
) -> tuple[Array, Carry]:
    """Run `cell` over a batch of sequences: `(ys, final carry)`.

    Backpropagation through time is `jax.grad` through this function.

        ys, carry = lj.unroll(cell, params, xs)                      # [B, T, F] -> [B, T, O]
        ys, carry = lj.unroll(cell, params, xs, lengths=lengths)     # padded batches
        ys, carry = lj.unroll(cell, params, xs, method=lj.Scan(remat=True))
        ys, carry = lj.unroll(cell, params, xs, method="quasi_newton")  # parallel in time

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
      mask: optional bool `[batch, time]` (`[time, batch]` with
        `time_major=True`), True where a step is real. A masked step keeps
        the carry and outputs zeros (Keras's masking; holes allowed), and
        its input reaches no value and no gradient. `lengths` is the special
        case of a suffix mask (with `reverse`, `lengths` reverses within
        each length; a mask reverses the whole time axis).
      resets: optional bool `[batch, time]` (`[time, batch]` with
        `time_major=True`): where `resets[b, t]` holds, sequence b's carry is
        set back to its initial carry (`carry`, or zeros) before step t, as
        at the start of a new episode or document. A batch with resets
        equals running each segment on its own.
      reverse: run from the last step to the first. With `lengths`, each
        sequence is reversed within its own length (PyTorch's packed
        sequences), and outputs are returned in the original time order.
        With `resets`, each segment is run backward on its own.
      time_major: layout of `xs`, `mask`, `resets` and the returned outputs.
      method: how the steps are evaluated (same results; speed, memory and
        depth differ): "auto" (default: `lj.Affine()` for cells whose step is
        affine in the carry, `lj.min_gru` and `lj.min_lstm`, else
        `lj.Scan()`), or an option object: `lj.Scan(unroll, remat,
        projection, column_blocks)`, the sequential `lax.scan`;
        `lj.Affine(algorithm, chunk)`, one exact parallel pass for affine
        cells; `lj.Newton(...)`, `lj.QuasiNewton(...)`, `lj.ELK(...)`,
        parallel-in-time solvers for any cell, exact at convergence;
        `lj.Fused(threads, fallback)`, the plain LSTM or GRU in one compiled
        CPU kernel per sequence (its fallback scan, with a warning, where
        the kernel cannot run the call). The strings "scan", "affine",
        "newton", "quasi_newton", "elk" and "fused" mean those objects at
        their defaults. A solver that has not converged
        raises RuntimeError naming the residual (and any NaN or inf in the
        inputs); under `jit` (where nothing can be raised at run time) every
        output and carry entry is NaN instead, and so is every derivative
        through them. A NaN input gives NaN in its sequence from that step
        to the next reset, with every method, as the scan does.
        Forward mode (`jax.jvp`, `jax.jacfwd`) and reverse mode work with
        every method (`lj.Fused` runs its fallback scan for forward mode).
        `lj.unroll_parallel` returns the convergence report.

    Returns:
      `(ys, carry)`: `ys` `[batch, time, output_size]` (or time-major) and the
      final carry. With T = 0, `ys` is empty and `carry` the initial one.
    """
    cell, strategy, inputs, reverse, time_major = _door(
        cell, params, xs, carry, lengths, mask, resets, reverse, time_major, method, "unroll"
    )
    ys, carry, info = _evaluate(
        cell, strategy, inputs, params, None, reverse=reverse, time_major=time_major
    )
    if info is not None:
        assert isinstance(strategy, Solver)  # only the solvers report convergence
        ys, carry = raise_if_not_converged(
            info, ys, carry, strategy, "unroll", lambda: _nonfinite(params, inputs, time_major)
        )
    return ys, carry


def _nonfinite(params, inputs, time_major: bool) -> str:
    """Where the inputs hold NaN or inf (valid steps of xs, carry, params); "" if nowhere.

    Run only when a solve has failed, on concrete inputs: it explains the failure.
    """
    try:
        return _describe_nonfinite(params, inputs, time_major)
    except jax.errors.JAXTypeError:  # traced (e.g. an eager jax.grad): nothing to say
        return ""


def _describe_nonfinite(params, inputs, time_major: bool) -> str:
    xs_t, carry0, lengths, mask, _ = inputs
    T, B = xs_t.shape[:2]
    valid = np.ones((T, B), bool)
    if lengths is not None:
        valid &= np.arange(T)[:, None] < np.asarray(lengths)[None, :]
    if mask is not None:
        valid &= np.asarray(mask)
    bad = valid & ~np.isfinite(np.asarray(xs_t)).all(axis=-1)  # [T, B]
    found = []
    if bad.any():
        steps = np.argwhere(bad if time_major else bad.T)
        shown = ", ".join(str(tuple(int(i) for i in step)) for step in steps[:MAX_LISTED])
        more = f" and {len(steps) - MAX_LISTED} more" if len(steps) > MAX_LISTED else ""
        layout = "[time, batch]" if time_major else "[batch, time]"
        found.append(f"xs holds NaN or inf at {layout} {shown}{more}")
    for name, tree in (("carry", carry0), ("params", params)):
        leaves = jax.tree_util.tree_leaves_with_path(tree)
        for path, leaf in leaves:
            if not np.isfinite(np.asarray(leaf)).all():
                found.append(f"{path_name(name, path)} holds NaN or inf")
    return ("The inputs are not finite: " + "; ".join(found)) if found else ""


def unroll_parallel(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Optional[Carry] = None,
    *,
    lengths: Optional[Array] = None,
    mask: Optional[Array] = None,
    resets: Optional[Array] = None,
    reverse: bool = False,
    time_major: bool = False,
    method: MethodArg = "quasi_newton",
    init: Optional[Carry] = None,
) -> tuple[Array, Carry, ParallelInfo]:
    """Run `cell` over whole sequences by a Newton-type solve, with its convergence report.

    The arguments mean what they mean in `lj.unroll`; `method` must be a
    solver: "quasi_newton" (default), "newton", "elk", or `lj.QuasiNewton(...)`,
    `lj.Newton(...)`, `lj.ELK(...)`. At convergence the outputs equal the
    sequential scan (to ~1e-10 in float64, ~1e-5 in float32). Gradients
    (`jax.grad`) are implicit: an adjoint recurrence at the solution, never
    backpropagation through the iterations.

    Args:
      init: initial guess of the carry after every step, leaves
        `[batch, time, ...]` (`[time, batch, ...]` with `time_major=True`),
        in the original time order as `ys` (also with `reverse`); None:
        zeros. Not differentiated.

    Returns:
      `(ys, carry, info)`: as `unroll`, plus `ParallelInfo(iterations,
      residual, converged)`. A solve that has not converged returns its last
      iterate and says so in `info`; it does not raise. `ys` and `carry`
      both come from that one iterate (`ys` the cell's `output` of each of
      its states, `carry` its last state), so they agree with each other
      even then.
    """
    where = "unroll_parallel"
    if not isinstance(_methods.as_method(method, where), Solver):
        raise ValueError(
            f"{where}: method must be a parallel-in-time solver ('newton', 'quasi_newton', "
            f"'elk' or their option objects); got {method!r}. Use lj.unroll for the others."
        )
    cell, strategy, inputs, reverse, time_major = _door(
        cell, params, xs, carry, lengths, mask, resets, reverse, time_major, method, where
    )
    guess = None
    if init is not None:
        xs_t, carry0 = inputs[0], inputs[1]
        T, B = xs_t.shape[:2]
        lead = (T, B) if time_major else (B, T)
        expected = jax.eval_shape(
            lambda: jax.tree_util.tree_map(lambda c: jnp.zeros(lead + c.shape[1:], c.dtype), carry0)
        )
        layout = "[time, batch, ...]" if time_major else "[batch, time, ...]"
        init = check_carry(init, expected, f"{where} (init, leaves {layout})", "init")
        dtype = jax.tree_util.tree_leaves(carry0)[0].dtype
        init = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), init)
        if not time_major:
            init = jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), init)
        guess = ravel(init)
    return _evaluate(cell, strategy, inputs, params, guess, reverse=reverse, time_major=time_major)

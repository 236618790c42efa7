"""The fused kernels as differentiable functions: reverse mode is the kernel's BPTT.

`sequence(cell, threads, has_flags)` is the function `lj.Fused` runs: the
plain LSTM or the GRU over a time-major sequence,
`(xs, weights, carry0, flags) -> (ys, carry_T)`, one kernel call. Its
derivative is a `jax.custom_jvp` whose rule runs the kernel's training
forward (the outputs, and what BPTT keeps) and adds the tangent as one
linear primitive, `lstmjax_fused_tangent`:

- transposed (reverse mode: `jax.grad`, `jax.vjp`), it is the kernel's BPTT
  pass over the kept activations, skipping `dxs` when `xs` is not
  differentiated and the outputs' cotangent when only the final carry is
  used: a training step is one forward and one backward kernel call;
- evaluated (forward mode: `jax.jvp`, `jax.jacfwd`), it is the tangent of
  the cell's own scan (`jax.jvp` of `lj.Scan()`), computed by JAX: forward
  mode works everywhere, also under a `jax.jit` that hides it from
  `unroll`'s door (which sends the forward mode it sees to the scan);
- under `jax.vmap` the kernels take the batched axis as members (one call runs
  each member in turn, without copies).

Higher derivatives (a Hessian-vector product, `jax.hessian`, `jax.jacfwd`
of `jax.grad`, hidden by a `jax.jit` from `unroll`'s door) go through the
scan too: the kernel calls inside a derivative (the training forward, the
BPTT pass, the tangent) each carry a JVP rule whose tangent is the scan's
(`jax.jvp` of the same pure-JAX reference), so every order JAX computes
for the scan it computes here, while the values stay the kernel's.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from lstmjax._cell import Cell
from lstmjax._fused_kernel import (
    GRU,
    GRU_RESET_BEFORE,
    LSTM,
    LSTM_PEEPHOLE,
    Kernel,
    decode_flags,
)
from lstmjax._gru import GRUCell, GRUParams
from lstmjax._lstm import LSTMCarry, LSTMCell, LSTMParams
from lstmjax._scan import Scan
from lstmjax._sequence import Sequences


def kernel_of(cell: Cell) -> Kernel:
    """The kernels of `cell` (an `lj.lstm` or `lj.gru` that `_fused.unsupported` accepted)."""
    if isinstance(cell, GRUCell):
        return GRU if cell.reset_after else GRU_RESET_BEFORE
    assert isinstance(cell, LSTMCell)
    return LSTM_PEEPHOLE if cell.peephole else LSTM


def to_operands(cell: Cell, params, carry) -> tuple[tuple, tuple]:
    """`cell`'s params and carry as the kernel's weight and carry arrays, in its order."""
    # w_x, w_h, b, and the LSTM's peepholes or the GRU's b_hn (reset after) where it has them
    weights = tuple(params[: kernel_of(cell).n_weights])
    return weights, tuple(jax.tree_util.tree_leaves(carry))


def from_operands(cell: Cell, weights, carry) -> tuple:
    """The inverse of `to_operands`: `(params, carry)` of `cell`."""
    if isinstance(cell, GRUCell):
        return GRUParams(*weights), carry[0]
    return LSTMParams(*weights), LSTMCarry(*carry)


def _scan_reference(cell: Cell, has_flags: bool, flags, xs, weights, carry0):
    """The same sequence by the cell's own scan: `(ys, carry_T)`, the kernel's meaning.

    Leading axes (members, as the kernel takes them) are mapped over with `jax.vmap`.
    """
    if xs.ndim > 3:
        return jax.vmap(functools.partial(_scan_reference, cell, has_flags))(
            flags, xs, weights, carry0
        )
    params, carry = from_operands(cell, weights, carry0)
    valid, reset = decode_flags(flags) if has_flags else (None, None)
    seq = Sequences(xs, valid, reset, carry)
    ys, carry_T, _ = Scan().resolve("cpu").run(cell, params, seq)
    return ys, tuple(jax.tree_util.tree_leaves(carry_T))


# ------------------------------------------------ the tangent, a linear primitive
#
# Operands: the residuals (xs, *weights, *carry0, flags, ys, *extras), known in
# reverse mode, then the tangents (t_xs, *t_weights, *t_carry0), linear.
# Parameters: cell, threads, has_flags. Results: (t_ys, *t_carry_T).

tangent_p = Primitive("lstmjax_fused_tangent")
tangent_p.multiple_results = True


def _split(operands, cell: Cell):
    k = kernel_of(cell)
    it = iter(operands)
    take = lambda n: tuple(next(it) for _ in range(n))  # noqa: E731
    xs, weights, carry0, flags = next(it), take(k.n_weights), take(k.n_carry), next(it)
    ys, extras = next(it), take(k.n_extras)
    t_xs, t_weights, t_carry0 = next(it), take(k.n_weights), take(k.n_carry)
    return (xs, weights, carry0, flags, ys, extras), (t_xs, t_weights, t_carry0)


def _tangent_abstract(*operands, cell, threads, has_flags):
    """The tangents have the shapes and dtypes of `ys` and the carry (these avals)."""
    (_, _, carry0, _, ys, _), _ = _split(operands, cell)
    return [ys, *carry0]


def _tangent_eval(*operands, cell, threads, has_flags):
    """Forward mode: the scan's tangent (the kernel's residuals are not needed)."""
    (xs, weights, carry0, flags, _, _), tangents = _split(operands, cell)
    run = functools.partial(_scan_reference, cell, has_flags, flags)
    _, (t_ys, t_carry) = jax.jvp(run, (xs, weights, carry0), tangents)
    return [t_ys, *t_carry]


def _tangent_transpose(cts, *operands, cell, threads, has_flags):
    """Reverse mode: the kernel's BPTT, given the cotangents of `(ys, carry_T)`."""
    (xs, weights, carry0, flags, ys, extras), (t_xs, t_weights, t_carry0) = _split(operands, cell)
    nones = [None] * (len(operands) - 1 - len(weights) - len(carry0))
    if all(type(ct) is ad.Zero for ct in cts):
        return nones + [None] * (1 + len(weights) + len(carry0))
    dys = None if type(cts[0]) is ad.Zero else cts[0]
    dcarry = tuple(
        jnp.zeros(c.shape, c.dtype) if type(ct) is ad.Zero else ct
        for ct, c in zip(cts[1:], carry0, strict=True)
    )
    need = lambda t: ad.is_undefined_primal(t)  # noqa: E731
    backward = _backward(cell, threads, has_flags, need(t_xs), dys is not None)
    dxs, dweights, dcarry0 = backward(
        xs, weights, carry0, flags, ys, extras, jnp.zeros((1,), xs.dtype) if dys is None else dys,
        dcarry,
    )  # fmt: skip
    keep = lambda g, t: g if need(t) else None  # noqa: E731
    return (
        nones
        + [dxs]
        + [keep(g, t) for g, t in zip(dweights, t_weights, strict=True)]
        + [keep(g, t) for g, t in zip(dcarry0, t_carry0, strict=True)]
    )


def _tangent_batch(operands, dims, **params):
    """`vmap`: the batched axis in front of every operand, as the kernels take members."""
    size = next(a.shape[d] for a, d in zip(operands, dims, strict=True) if d is not None)
    front = [
        jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(operands, dims, strict=True)
    ]
    out = tangent_p.bind(*front, **params)
    return out, [0] * len(out)


def _tangent_jvp(primals, tangents, **params):
    """A derivative of the tangent (second order): the scan's, of the same pure-JAX map."""
    tangents = [ad.instantiate_zeros(t) for t in tangents]
    _, t_out = jax.jvp(functools.partial(_tangent_eval, **params), primals, tangents)
    return tangent_p.bind(*primals, **params), t_out


tangent_p.def_abstract_eval(_tangent_abstract)
tangent_p.def_impl(
    lambda *ops, **params: jax.jit(functools.partial(tangent_p.bind, **params))(*ops)
)
mlir.register_lowering(tangent_p, mlir.lower_fun(_tangent_eval, multiple_results=True))
ad.primitive_transposes[tangent_p] = _tangent_transpose
ad.primitive_jvps[tangent_p] = _tangent_jvp
batching.primitive_batchers[tangent_p] = _tangent_batch


# ------------------------------------------------ the sequence function


@functools.cache
def sequence(cell: Cell, threads: int, has_flags: bool):
    """`(xs, weights, carry0, flags) -> (ys, carry_T)` through the kernels, differentiable.

    `xs` `[T, B, I]`, `weights` and `carry0` tuples of arrays of one dtype
    (float32 or float64), `flags` the step flags `[T, B]` uint8
    (`_fused_kernel.encode_flags`: masked steps, restarts) with `has_flags`,
    else a `[1]` placeholder; `ys` at a masked step is the kept `h`.
    """
    kernel = kernel_of(cell)
    options = {"threads": threads, "has_flags": has_flags}

    @jax.custom_jvp
    def train_forward(xs, weights, carry0, flags):
        return kernel.train(xs, weights, carry0, flags, **options)

    @train_forward.defjvp
    def _(primals, tangents):  # a derivative of a derivative: the scan's tangent
        xs, weights, carry0, flags = primals
        ys, carry_T, extras = train_forward(*primals)
        reference = functools.partial(_scan_reference, cell, has_flags, flags)
        _, (t_ys, t_carry) = jax.jvp(reference, (xs, weights, carry0), tangents[:3])
        # The kept activations' tangents are not formed: their only readers (the BPTT pass
        # and the tangent) take their own derivatives from the scan, not through them.
        return (ys, carry_T, extras), (t_ys, t_carry, tuple(jnp.zeros_like(e) for e in extras))

    @jax.custom_jvp
    def run(xs, weights, carry0, flags):
        return kernel.infer(xs, weights, carry0, flags, **options)

    @run.defjvp
    def _(primals, tangents):
        xs, weights, carry0, flags = primals
        t_xs, t_weights, t_carry0, _ = tangents
        ys, carry_T, extras = train_forward(xs, weights, carry0, flags)
        t_out = tangent_p.bind(
            xs, *weights, *carry0, flags, ys, *extras, t_xs, *t_weights, *t_carry0,
            cell=cell, threads=threads, has_flags=has_flags,
        )  # fmt: skip
        return (ys, carry_T), (t_out[0], tuple(t_out[1:]))

    return run


@functools.cache
def _backward(cell: Cell, threads: int, has_flags: bool, need_dxs: bool, has_dys: bool):
    """The kernel's BPTT pass as a function with derivatives (those of the scan's BPTT).

    `(xs, weights, carry0, flags, ys, extras, dys, dcarry_T) -> (dxs, dweights, dcarry0)`;
    `dys` is a `[1]` placeholder without `has_dys`, and `dxs` is None without `need_dxs`.
    """
    kernel = kernel_of(cell)
    options = {"threads": threads, "has_flags": has_flags, "need_dxs": need_dxs}

    def reference(flags, xs, weights, carry0, dys, dcarry):
        run = functools.partial(_scan_reference, cell, has_flags, flags)
        (ys, _), vjp = jax.vjp(run, xs, weights, carry0)
        dxs, dweights, dcarry0 = vjp((dys if has_dys else jnp.zeros_like(ys), dcarry))
        return (dxs if need_dxs else jnp.zeros((1,), xs.dtype)), dweights, dcarry0

    @jax.custom_jvp
    def backward(xs, weights, carry0, flags, ys, extras, dys, dcarry):
        dxs, dweights, dcarry0 = kernel.backward(
            xs, weights, carry0, flags, ys, extras, dys if has_dys else None, dcarry, **options
        )
        return (dxs if need_dxs else jnp.zeros((1,), xs.dtype)), dweights, dcarry0

    @backward.defjvp
    def _(primals, tangents):  # a derivative of a derivative: the scan's
        xs, weights, carry0, flags, _, _, dys, dcarry = primals
        t_xs, t_weights, t_carry0, _, _, _, t_dys, t_dcarry = tangents
        _, t_out = jax.jvp(
            functools.partial(reference, flags),
            (xs, weights, carry0, dys, dcarry),
            (t_xs, t_weights, t_carry0, t_dys, t_dcarry),
        )
        return backward(*primals), t_out

    def call(xs, weights, carry0, flags, ys, extras, dys, dcarry):
        dxs, dweights, dcarry0 = backward(xs, weights, carry0, flags, ys, extras, dys, dcarry)
        return (dxs if need_dxs else None), dweights, dcarry0

    return call

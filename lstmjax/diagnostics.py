"""Gradient diagnostics for recurrent cells: how gradients travel through time.

Every function here is pure. Those that unroll a cell are jitted, keyed on
the cell and any Python callable (equal cells share compiled programs), so a
loop that calls one again with the same shapes compiles once; they can also be
called inside the user's own `jax.jit`.

Conventions shared by the functions below:
  * `xs` is batch-major, `[B, T, F]`, as for `lstmjax.unroll`.
  * `carry_t` is the carry *after* step t, for t = 0..T-1: `carry_{T-1}` is
    the final carry, and `carry_t` is what step t + 1 reads.
  * The distance from the end is k = T - 1 - t, so index `[:, T - 1 - k]`
    of a `[B, T]` result is the value k steps back.
  * Every cell's output is a function of its new carry, `cell.output(carry)`
    (the carry itself for the RNN, GRU and Jordan, its `h` field for the LSTM).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._array_checks import as_array, check_float, check_rank
from lstmjax._arrays import group_norms, ravel, unraveler
from lstmjax._cell import Cell, check_cell, check_params, initial_carry_for
from lstmjax._checks import check_bool, check_callable, check_optional_size, jit_with_options
from lstmjax._typing import Array, Carry, Params

LossFn = Callable[[Array], Array]  # ys [B, T, O] -> per-example losses [B]


class CarryGradNorms(NamedTuple):
    """Norms of dL/d carry_t, from `carry_grad_norms`.

    Attributes:
      combined: `[B, T]`, per example, the Euclidean norm of the whole carry's
        gradient: sqrt(sum over carry fields of ||dL_b / d field_t||^2); for
        the LSTM, sqrt(||dL/dh_t||^2 + ||dL/dc_t||^2).
      fields: the carry's structure (an array, or e.g. `LSTMCarry(h, c)`)
        with each leaf `[B, T]`: the norm of each field's gradient alone.
      mean: `[T]`, `combined` averaged over the batch.
      fields_mean: like `fields`, each leaf `[T]`, averaged over the batch.
    """

    combined: Array
    fields: Any
    mean: Array
    fields_mean: Any


def _checked(cell: Cell, params: Params, xs: Array, carry: Optional[Carry], where: str):
    """The door of every function here: `(xs, carry)` checked, the carry cast (zeros if None).

    The checks are `unroll`'s (`_cell`, `_checks`): a `Cell`, real inputs
    `[batch, time, features]`, params made for the cell at that input size,
    and a carry of the cell's structure with leading shape `[batch]` (a plain
    tuple for a NamedTuple carry is converted).
    """
    cell = check_cell(cell, where)
    xs = as_array(xs, "xs")
    check_float(xs, "xs")
    check_rank(xs, 3, "[batch, time, features]", where)
    B, _, F = xs.shape
    check_params(cell, params, F, where)
    dtype = jnp.result_type(xs, *jax.tree_util.tree_leaves(params))
    return xs.astype(dtype), initial_carry_for(cell, carry, B, dtype, where)


def _time_major_inputs(cell: Cell, params: Params, xs: Array, carry: Optional[Carry], where: str):
    """Input projections `[T, B, G*H]` and the initial carry, through the door (`_checked`)."""
    xs, carry = _checked(cell, params, xs, carry, where)
    return cell.project(params, jnp.swapaxes(xs, 0, 1)), carry


def _probed_outputs(cell, params, pxs, carry, probes):
    """Run the cell, adding `probes[t]` to the carry right after step t.

    Returns ys `[B, T, O]` computed from the probed carries, so the gradient
    with respect to `probes[t]` (at zero) is dL/d carry_t in full: through
    the output y_t and through every later step.
    """

    def body(c, inputs):
        px, eps = inputs
        c, _ = cell.recur(params, c, px)
        c = jax.tree_util.tree_map(jnp.add, c, eps)
        return c, cell.output(c)

    _, ys = jax.lax.scan(body, carry, (pxs, probes))
    return jnp.swapaxes(ys, 0, 1)


def _norm_last(x: Array) -> Array:
    """Euclidean norm over the last axis, `[T, B, D] -> [B, T]`."""
    return jnp.swapaxes(jnp.sqrt(jnp.sum(jnp.square(x), axis=-1)), 0, 1)


@functools.partial(jax.jit, static_argnames=("cell", "loss_fn"))
def carry_grad_norms(
    cell: Cell,
    params: Params,
    xs: Array,
    loss_fn: LossFn,
    carry: Optional[Carry] = None,
) -> CarryGradNorms:
    """||dL_b / d carry_t|| for every step t and every example b, in one backward pass.

    A zero "probe" is added to the carry after every step and the loss is
    differentiated with respect to the probes: the gradient at a probe is the
    gradient at the carry it was added to (all paths: the output of that step
    and every later step).

    Args:
      cell: an lstmjax `Cell`.
      params: its parameters.
      xs: inputs `[B, T, F]`.
      loss_fn: `ys [B, T, O] -> [B]`, one loss per example (e.g. a readout of
        the last output, `ys[:, -1]`). The examples do not interact, so the
        gradient of the summed loss at example b's carry is the gradient of
        L_b alone; a batch-mean loss would only scale everything by 1/B.
      carry: initial carry with leading axis B; None means zeros.

    Returns:
      `CarryGradNorms` (`combined` `[B, T]`, per-field norms, batch means).
    """
    pxs, carry = _time_major_inputs(cell, params, xs, carry, "carry_grad_norms")
    check_callable("carry_grad_norms: loss_fn", loss_fn)
    T, B = pxs.shape[:2]
    probes = jax.tree_util.tree_map(lambda c: jnp.zeros((T,) + c.shape, c.dtype), carry)

    def total_loss(eps):
        losses = loss_fn(_probed_outputs(cell, params, pxs, carry, eps))
        if jnp.shape(losses) != (B,):
            raise ValueError(
                f"carry_grad_norms: loss_fn must return one loss per example, shape ({B},); "
                f"got shape {jnp.shape(losses)}."
            )
        return jnp.sum(losses)

    grads = jax.grad(total_loss)(probes)  # carry structure, leaves [T, B, D]
    fields = jax.tree_util.tree_map(_norm_last, grads)
    combined = jnp.sqrt(sum(jnp.square(f) for f in jax.tree_util.tree_leaves(fields)))
    return CarryGradNorms(
        combined=combined,
        fields=fields,
        mean=jnp.mean(combined, axis=0),
        fields_mean=jax.tree_util.tree_map(lambda f: jnp.mean(f, axis=0), fields),
    )


def _flat_step(cell: Cell, params: Params, template: Carry):
    """One step as a map of flat vectors: (carry `[D]`, px) -> carry `[D]`, one example."""
    unravel = unraveler(template)

    def step(v: Array, px: Array) -> Array:
        return ravel(cell.recur(params, unravel(v), px)[0])

    return step


class JacobianProducts(NamedTuple):
    """Carry-Jacobian products applied backwards in time, from `jacobian_products`.

    Attributes:
      log_stretch: `[B, T, k]`; entry `[b, t, i]` is the log of the factor by
        which the transposed Jacobian of step t stretched column i (with
        `qr=True`, log |R_ii| of the QR step instead). Summed from the end,
        log ||u_t|| = log ||u_{T-1}|| + sum_{s > t} log_stretch[:, s].
      vectors: `[B, D, k]`, the columns after the last step back, u_{-1}
        (the cotangent at the initial carry), each of unit norm.
    """

    log_stretch: Array
    vectors: Array


def _visited(step, carry: Array, pxs: Array) -> Array:
    """The flat carry each step reads: `[T, B, D]`, entry s = carry_{s-1}."""

    def forward(v, px):
        return jax.vmap(step)(v, px), v

    return jax.lax.scan(forward, carry, pxs)[1]


@jit_with_options("cell", "qr")
def jacobian_products(
    cell: Cell,
    params: Params,
    xs: Array,
    vectors: Array,
    carry: Optional[Carry] = None,
    *,
    qr: bool = False,
) -> JacobianProducts:
    """Apply the transposed carry Jacobians to `vectors`, from the last step back.

    With J_t = d carry_t / d carry_{t-1} (the carry flattened to one vector,
    for the LSTM `[h; c]`), and u_{T-1} = `vectors`, the recursion is

        u_{t-1} = J_t^T u_t,   t = T-1, ..., 0,

    which is backpropagation through time: if u_{T-1} = dL/d carry_{T-1} for
    a loss on the last step, u_t = dL/d carry_t. Each J_t^T u is one
    vector-Jacobian product (reverse mode, so it works for every cell,
    custom VJPs included), costing about one step; no Jacobian is formed.

    To keep the numbers finite, the columns are renormalised after every
    step and the log of each stretch factor is recorded. With `qr=True` the
    columns are instead re-orthonormalised (a QR decomposition, signs chosen
    so that diag(R) > 0): the Benettin recursion of `dynamics.lyapunov_spectrum`.

    Args:
      cell: an lstmjax `Cell`.
      params: its parameters.
      xs: inputs `[B, T, F]`.
      vectors: `[B, D, k]` (or `[D, k]`, shared by the batch), the columns
        u_{T-1}; D is the flat carry size.
      carry: initial carry with leading axis B; None means zeros.
      qr: re-orthonormalise (True) or only renormalise each column (False).

    Returns:
      `JacobianProducts` (`log_stretch` `[B, T, k]`, `vectors` `[B, D, k]`).
    """
    pxs, carry = _time_major_inputs(cell, params, xs, carry, "jacobian_products")
    qr = check_bool("jacobian_products: qr", qr)
    template = jax.tree_util.tree_map(lambda c: c[0], carry)
    step = _flat_step(cell, params, template)
    flat = ravel(carry)
    B, D = flat.shape
    vectors = as_array(vectors, "vectors")
    check_float(vectors, "vectors")
    vectors = jnp.asarray(vectors, flat.dtype)
    if vectors.ndim == 2:
        vectors = jnp.broadcast_to(vectors, (B,) + vectors.shape)
    if vectors.ndim != 3 or vectors.shape[:2] != (B, D):
        raise ValueError(
            f"jacobian_products: vectors must be [batch, carry size, k] = [{B}, {D}, k] or "
            f"[{D}, k]; "
            f"got shape {jnp.shape(vectors)}."
        )

    def back_one(v, px, u):  # one example: u [D, k] -> J^T u [D, k]
        _, vjp_fn = jax.vjp(lambda w: step(w, px), v)
        return jax.vmap(lambda col: vjp_fn(col)[0], in_axes=1, out_axes=1)(u)

    def back(u, inputs):
        v, px = inputs
        u = jax.vmap(back_one)(v, px, u)
        if qr:
            q, r = jnp.linalg.qr(u)
            d = jnp.diagonal(r, axis1=-2, axis2=-1)
            sign = jnp.where(d < 0, -1.0, 1.0).astype(d.dtype)
            return q * sign[:, None, :], jnp.log(jnp.abs(d))
        norms = jnp.sqrt(jnp.sum(jnp.square(u), axis=1))  # [B, k]
        return u / norms[:, None, :], jnp.log(norms)

    u0 = vectors / jnp.sqrt(jnp.sum(jnp.square(vectors), axis=1, keepdims=True))
    if qr:
        u0 = jnp.linalg.qr(vectors)[0]
    u, logs = jax.lax.scan(back, u0, (_visited(step, flat, pxs), pxs), reverse=True)
    return JacobianProducts(log_stretch=jnp.swapaxes(logs, 0, 1), vectors=u)


@functools.partial(jax.jit, static_argnames=("cell",))
def jacobian_norms(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Optional[Carry] = None,
) -> Array:
    """Spectral norms ||d carry_{T-1} / d carry_t||_2 for t = 0..T-1, per example.

    The carry is flattened to one vector (for the LSTM `[h; c]`, size 2H), so
    this is the norm of the full state-to-state Jacobian product
    J_{T-1} J_{T-2} ... J_{t+1}, with J_s = d carry_s / d carry_{s-1}. Each
    J_s comes from `jax.jacrev` of one step; the products are accumulated
    backwards from the identity at t = T - 1, and each norm is the largest
    singular value (`jnp.linalg.norm(ord=2)`). Cost: T SVDs of `[D, D]` per
    example, so keep D and T moderate.

    Args:
      cell: an lstmjax `Cell`.
      params: its parameters.
      xs: inputs `[B, T, F]`.
      carry: initial carry with leading axis B; None means zeros.

    Returns:
      `[B, T]`; entry `[b, T - 1 - k]` is ||d carry_{T-1} / d carry_{T-1-k}||
      (1 at k = 0).
    """
    pxs, carry = _time_major_inputs(cell, params, xs, carry, "jacobian_norms")
    template = jax.tree_util.tree_map(lambda c: c[0], carry)
    step = _flat_step(cell, params, template)
    jac_step = jax.vmap(jax.jacrev(step, argnums=0))  # ([B, D], [B, P]) -> [B, D, D]

    before = _visited(step, ravel(carry), pxs)  # before[s] = carry_{s-1}
    jacs = jax.vmap(jac_step)(before, pxs)  # [T, B, D, D], jacs[s] = J_s
    B, D = jacs.shape[1], jacs.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(D, dtype=jacs.dtype), (B, D, D))

    def backward(prod, jac):
        # prod = d carry_{T-1} / d carry_s; reading J_s gives d carry_{T-1} / d carry_{s-1}.
        norm = jnp.linalg.norm(prod, ord=2, axis=(-2, -1))
        return prod @ jac, norm

    _, norms = jax.lax.scan(backward, eye, jacs, reverse=True)  # norms[s]: t = s
    return jnp.swapaxes(norms, 0, 1)


def spectral_norm(w: Array) -> Array:
    """Largest singular value of a matrix `w: [M, N]` (a scalar)."""
    return jnp.linalg.norm(w, ord=2)


def spectral_radius(w: Array) -> Array:
    """Largest eigenvalue modulus of a square matrix `w: [N, N]` (a scalar).

    Uses `jnp.linalg.eigvals`, which JAX implements on CPU only.
    """
    if jnp.ndim(w) != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"spectral_radius needs a square matrix; got shape {jnp.shape(w)}.")
    return jnp.max(jnp.abs(jnp.linalg.eigvals(w)))


def param_group_grad_norms(
    grads: Any, depth: Optional[int] = 1, *, bare: str = "all"
) -> dict[str, Array]:
    """Euclidean norm of the gradient of each parameter group.

    Groups are named by their path in the pytree, parts joined by "/": the
    fields of a NamedTuple, the indices of a tuple, the keys of a dict. For
    `LSTMParams` the groups are "w_x", "w_h", "b" (and "peephole"); with
    `depth=None`, an `lj.recurrent` stack gives "0/forward/w_x", ... and an
    MLP "layers/0/w", .... Fields holding no arrays (None) are left out.
    With the default depth the groups are those of the `grad_norms` metric
    of `lstmjax.train.make_train_step`; this function serves gradients
    computed elsewhere, and finer groupings.

    Args:
      grads: a pytree of arrays (gradients shaped like the parameters).
      depth: group by the first `depth` path parts. The default, 1, gives
        one norm per top-level field (per layer for an `lj.recurrent` stack,
        per sub-model for `{"rnn": ..., "readout": ...}`); None gives one
        group per array, 0 one group of all (named `bare`).
      bare: the name of the one group when `grads` is a bare array or
        `depth=0` ("all"; the training metrics call it "params").

    Returns:
      A dict from group name to a scalar norm, in pytree order.
    """
    depth = check_optional_size("param_group_grad_norms: depth", depth, minimum=0)
    return group_norms(grads, depth, bare)


__all__ = [
    "CarryGradNorms",
    "JacobianProducts",
    "carry_grad_norms",
    "jacobian_norms",
    "jacobian_products",
    "param_group_grad_norms",
    "spectral_norm",
    "spectral_radius",
]

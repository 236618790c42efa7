"""The exact parallel strategy for cells whose step is affine in the carry.

For a cell with `linear_in_carry=True` (the min cells) the masked step
h_t = F_t(h_{t-1}) = masked_recur(recur, params, h_{t-1}, px_t, ...) is
elementwise affine in every carry leaf: F_t(h) = a_t * h + b_t, with
b_t = F_t(0) and a_t = dF_t/dh (one forward-mode derivative along ones,
exact for an elementwise affine map). The masks stay affine (past a
length: a = 1, b = 0; at a reset: a = 0, b = F_t(carry0)), so lengths,
resets and reverse need nothing here. One affine scan then gives every
state, and one vectorised pass of `recur` over all steps the outputs.

Cost: work O(T B H) and memory O(T B H) (the coefficients and states); the
gradient is autodiff of the same exact computation (the scan's own
transpose: an affine scan backward in time), of the same order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstmjax._affine_scan import affine_scan
from lstmjax._cell import Array, Carry, Cell, Params
from lstmjax._sequence import Sequences, masked_recur


def step_fn(cell: Cell, params: Params, seq: Sequences):
    """`F(h_prev, px_t, valid_t, reset_t) -> (h_t, y_t)`: THE masked step, for vmap over t."""

    def f(h, px, valid, reset):
        return masked_recur(cell.recur, params, h, px, valid, reset, seq.carry0)

    return f


def shifted(hs: Carry, carry0: Carry) -> Carry:
    """`[carry0, h_0, ..., h_{T-2}]`: the carry entering each step, leaf by leaf."""
    return jax.tree_util.tree_map(
        lambda h, c: jnp.concatenate([c[None], h[:-1]], axis=0)[: h.shape[0]], hs, carry0
    )


def last(hs: Carry, carry0: Carry) -> Carry:
    """The final carry (carry0 when T = 0)."""
    return jax.tree_util.tree_map(lambda h, c: h[-1] if h.shape[0] else c, hs, carry0)


def linear_unroll(
    cell: Cell, params: Params, seq: Sequences, algorithm: str = "auto"
) -> tuple[Array, Carry]:
    """Every state and output at once; `ys: [T, B, O]` in processing order."""
    f = step_fn(cell, params, seq)
    px = cell.project(params, seq.xs)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, seq.carry0)
    ones = jax.tree_util.tree_map(jnp.ones_like, seq.carry0)

    def coefficients(px_t, valid, reset):
        b, a = jax.jvp(lambda h: f(h, px_t, valid, reset)[0], (zeros,), (ones,))
        return a, b

    a, b = jax.vmap(coefficients)(px, seq.valid, seq.reset)
    hs = jax.tree_util.tree_map(
        lambda a_, b_, h0: affine_scan(a_, b_, h0, algorithm), a, b, seq.carry0
    )
    ys = jax.vmap(lambda h, p, v, r: f(h, p, v, r)[1])(
        shifted(hs, seq.carry0), px, seq.valid, seq.reset
    )
    return ys, last(hs, seq.carry0)

"""The LSTM step's recurrent part with a hand-derived backward pass.

Autodiff of the LSTM step, inside `lax.scan`, stores about fourteen
`[B, H]` arrays per time step for the backward pass and builds a backward
graph of many small elementwise kernels. The backward pass written out by
hand needs only the four gate activations, the tanh of the new cell state,
the previous cell state and the previous output (seven `[B, H]` arrays; the
new cell state too with peepholes), and computes the four gate gradients in
one sweep. Measured with `experiments/benchmark.py` on XLA:CPU it makes the
LSTM training step 1.1-1.5x faster (see the README's performance notes).

Forward-mode differentiation (`jax.jvp`, `jax.jacfwd`, `jax.hessian`) does
not go through a `custom_vjp`; reverse mode (`grad`, `vjp`, `jacrev`) does,
to any order of `grad` of a `grad`-free function.

The backward pass, with z = px + h W_h split into (z_i, z_f, z_g, z_o),
i, f, o = sigmoid(.), g = tanh(z_g), c' = f c + i g, h' = o tanh(c'), and
the peephole terms p_i c, p_f c, p_o c' added to z_i, z_f, z_o when on:

    dz_o = dh' tanh(c') o (1 - o)
    dc'  = dc'_in + dh' o (1 - tanh(c')^2) + dz_o p_o
    dz_i = dc' g i (1 - i),   dz_f = dc' c f (1 - f),   dz_g = dc' i (1 - g^2)
    dc   = dc' f + dz_i p_i + dz_f p_f
    dh   = dz W_h^T,   dW_h = sum over the batch of h^T dz,   dpx = dz
    dp_i = sum(dz_i c),   dp_f = sum(dz_f c),   dp_o = sum(dz_o c')
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._checks import row

Array = jax.Array


class Residuals(NamedTuple):
    w_h: Array  # [H, 4H]
    peephole: Optional[Array]  # [3, H] or None
    h_t: Array  # [H, batch], the previous output with every batch axis merged, transposed
    c: Array  # [..., H], the previous cell state
    # i, f, g, o after their nonlinearities, each [..., H]. Kept apart: one
    # [..., 4H] concatenation per step measured 1.06-1.13x slower on XLA:CPU.
    gates: tuple[Array, Array, Array, Array]
    c_new: Array  # [..., H]
    tanh_c_new: Array  # [..., H]


def _forward(w_h, peephole, h, c, px):
    zi, zf, zg, zo = jnp.split(px + h @ w_h, 4, axis=-1)
    if peephole is not None:
        zi = zi + row(peephole[0], c) * c
        zf = zf + row(peephole[1], c) * c
    i, f, g = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg)
    c_new = f * c + i * g
    if peephole is not None:
        zo = zo + row(peephole[2], c_new) * c_new
    o = jax.nn.sigmoid(zo)
    tanh_c_new = jnp.tanh(c_new)
    gates = (i, f, g, o)
    # Stored transposed so that dW_h = h^T dz is a plain [H, B] @ [B, 4H]
    # matmul: XLA:CPU runs a transposed operand through a slower path.
    h_t = jnp.reshape(h, (-1, h.shape[-1])).T
    return (o * tanh_c_new, c_new), Residuals(w_h, peephole, h_t, c, gates, c_new, tanh_c_new)


def lstm_recur(
    w_h: Array, peephole: Optional[Array], h: Array, c: Array, px: Array
) -> tuple[Array, Array]:
    """One LSTM step after the input projection: `(h, c, px) -> (h_new, c_new)`.

    Args:
      w_h: `[H, 4H]`, gate blocks i, f, g, o.
      peephole: `[3, H]` (rows i, f, o) or None.
      h, c: `[..., H]`, the previous output and cell state.
      px: `[..., 4H]`, `x @ W_x + b` for this step, same batch shape as h.

    Returns:
      `(h_new, c_new)`, each `[..., H]`, in the common dtype of the inputs.
    """
    # One dtype inside the custom VJP; autodiff of the casts (outside) brings
    # each cotangent back to its input's dtype.
    dtype = jnp.result_type(w_h, h, c, px, *([] if peephole is None else [peephole]))
    w_h, h, c, px = (jnp.asarray(a, dtype) for a in (w_h, h, c, px))
    peephole = None if peephole is None else jnp.asarray(peephole, dtype)
    return _lstm_recur(w_h, peephole, h, c, px)


@jax.custom_vjp
def _lstm_recur(w_h, peephole, h, c, px):
    return _forward(w_h, peephole, h, c, px)[0]


def _fwd(w_h, peephole, h, c, px):
    return _forward(w_h, peephole, h, c, px)


def _batch_sum(a: Array) -> Array:
    """Sum every axis but the last: `[..., H] -> [H]`."""
    return jnp.sum(a, axis=tuple(range(a.ndim - 1)))


def _bwd(res: Residuals, cotangents):
    dh_new, dc_new = cotangents
    i, f, g, o = res.gates
    p = res.peephole
    dzo = dh_new * res.tanh_c_new * o * (1.0 - o)
    dc = dc_new + dh_new * o * (1.0 - res.tanh_c_new * res.tanh_c_new)
    if p is not None:
        dc = dc + dzo * row(p[2], dzo)
    dzi = dc * g * i * (1.0 - i)
    dzf = dc * res.c * f * (1.0 - f)
    dzg = dc * i * (1.0 - g * g)
    dc_prev = dc * f
    dp = None
    if p is not None:
        dc_prev = dc_prev + dzi * row(p[0], dzi) + dzf * row(p[1], dzf)
        dp = jnp.stack(
            [_batch_sum(dzi * res.c), _batch_sum(dzf * res.c), _batch_sum(dzo * res.c_new)]
        )
    dz = jnp.concatenate([dzi, dzf, dzg, dzo], axis=-1)
    H4 = dz.shape[-1]
    # dW_h sums h^T dz over every batch axis (there may be none, or several).
    dw_h = res.h_t @ jnp.reshape(dz, (-1, H4))
    return dw_h, dp, dz @ res.w_h.T, dc_prev, dz


_lstm_recur.defvjp(_fwd, _bwd)

"""The LSTM's equations (the only copy) and their hand-written derivative (forward and reverse).

`_forward` is the recurrent part of the LSTM step, written once; layer
normalisation is an option of it (`ln`). The plain step carries the
hand-written derivative below; the layer-normalised one is differentiated
by plain autodiff of the same `_forward` (the coefficients below hold for
the un-normalised step only).

Autodiff of the LSTM step, inside `lax.scan`, stores about fourteen
`[B, H]` arrays per time step for the backward pass and builds a backward
graph of many small elementwise kernels. Here the step carries a
`jax.custom_jvp` whose tangent map is written out by hand on seven
precomputed coefficient arrays. That one rule serves both modes:

- forward mode (`jax.jvp`, `jax.jacfwd`, `jax.hessian`, and the Newton
  solvers' Jacobians) evaluates it directly;
- reverse mode (`grad`, `vjp`, `jacrev`, BPTT) is JAX's transpose of the
  same linear map: it keeps only the coefficient arrays as residuals (seven
  `[B, H]` arrays, as the former hand-written `custom_vjp` did; the old and
  new cell states too with peepholes) and its transpose is the hand-derived
  backward pass below, term by term. Measured against that `custom_vjp` in
  one run: see the README's "Parallel in time" section.

With z = px + h W_h split into (z_i, z_f, z_g, z_o), i, f, o = sigmoid(.),
g = tanh(z_g), c' = f c + i g, h' = o tanh(c'), and the peephole terms
p_i c, p_f c, p_o c' added to z_i, z_f, z_o when on, the coefficients are

    a_i = i (1 - i) g,   a_f = f (1 - f) c,   a_g = i (1 - g^2)
    b_c = o (1 - tanh(c')^2),   b_o = tanh(c') o (1 - o)

and the tangent map (d. a tangent) is

    dz  = dpx + dh W_h + h dW_h   (+ dp_i c + p_i dc, dp_f c + p_f dc in z_i, z_f)
    dc' = f dc + a_i dz_i + a_f dz_f + a_g dz_g
    dz_o += dp_o c' + p_o dc'     (peepholes)
    dh' = b_c dc' + b_o dz_o

whose transpose is the backward pass

    dc'_ = dc'_in + b_c dh'_ (+ p_o dz_o_),   dz_o_ = b_o dh'_
    dz_i_ = a_i dc'_,  dz_f_ = a_f dc'_,  dz_g_ = a_g dc'_,  dc_ = f dc'_ (+ p_i dz_i_ + p_f dz_f_)
    dh_ = dz_ W_h^T,   dW_h_ = h^T dz_,   dpx_ = dz_.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._arrays import row
from lstmjax._layer_norm import layer_norm
from lstmjax._typing import Array


class LSTMNorm(NamedTuple):
    """The layer-norm gains of the recurrent step (`layer_norm=True`)."""

    gain_h: Array  # [4H], LN gain of h W_h
    gain_c: Array  # [H], LN gain of c_t before its tanh
    bias_c: Array  # [H], LN bias of c_t before its tanh


class Coefficients(NamedTuple):
    """What the tangent map multiplies tangents by (the reverse-mode residuals)."""

    w_h: Array  # [H, 4H]
    peephole: Optional[Array]  # [3, H] or None
    # [H, batch]: the previous output, batch axes merged, transposed, so that
    # the transpose of h dW_h is dW_h = h^T dz as a plain [H, B] @ [B, 4H]
    # matmul (XLA:CPU runs a transposed operand through a slower path).
    h_t: Array
    f: Array  # [..., H], forget gate
    a_i: Array  # [..., H]
    a_f: Array  # [..., H]
    a_g: Array  # [..., H]
    b_c: Array  # [..., H]
    b_o: Array  # [..., H]
    c: Optional[Array]  # [..., H], the previous cell state (peepholes only)
    c_new: Optional[Array]  # [..., H], the new cell state (peepholes only)


def _forward(w_h, peephole, h, c, px, ln: Optional[LSTMNorm] = None):
    """The LSTM equations, plain autodiff-able code: `((h', c'), Coefficients or None)`.

    With `ln` (layer norm), h W_h is normalised with `ln.gain_h` and c'
    before its tanh with `ln.gain_c`, `ln.bias_c` (the carried c' and the
    output-gate peephole see the unnormalised c'); the coefficients, which
    hold for the plain step only, are then None.
    """
    hw = h @ w_h
    if ln is not None:
        hw = layer_norm(hw, ln.gain_h)
    zi, zf, zg, zo = jnp.split(px + hw, 4, axis=-1)
    if peephole is not None:
        zi = zi + row(peephole[0], c) * c
        zf = zf + row(peephole[1], c) * c
    i, f, g = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg)
    c_new = f * c + i * g
    if peephole is not None:
        zo = zo + row(peephole[2], c_new) * c_new
    o = jax.nn.sigmoid(zo)
    if ln is not None:
        return (o * jnp.tanh(layer_norm(c_new, ln.gain_c, ln.bias_c)), c_new), None
    tanh_c_new = jnp.tanh(c_new)
    coef = Coefficients(
        w_h=w_h,
        peephole=peephole,
        h_t=jnp.reshape(h, (-1, h.shape[-1])).T,
        f=f,
        a_i=i * (1.0 - i) * g,
        a_f=f * (1.0 - f) * c,
        a_g=i * (1.0 - g * g),
        b_c=o * (1.0 - tanh_c_new * tanh_c_new),
        b_o=tanh_c_new * o * (1.0 - o),
        c=c if peephole is not None else None,
        c_new=c_new if peephole is not None else None,
    )
    return (o * tanh_c_new, c_new), coef


def _tangent(k: Coefficients, dw_h, dp, dh, dc, dpx):
    """The linear map `(dW_h, dp, dh, dc, dpx) -> (dh', dc')` at the point `k` was made at."""
    h_dw = jnp.reshape(k.h_t.T @ dw_h, dpx.shape)
    dzi, dzf, dzg, dzo = jnp.split(dpx + dh @ k.w_h + h_dw, 4, axis=-1)
    p = k.peephole
    if p is not None:
        assert k.c is not None  # kept with the peepholes (_forward)
        dzi = dzi + row(dp[0], k.c) * k.c + row(p[0], dc) * dc
        dzf = dzf + row(dp[1], k.c) * k.c + row(p[1], dc) * dc
    dc_new = k.f * dc + k.a_i * dzi + k.a_f * dzf + k.a_g * dzg
    if p is not None:
        assert k.c_new is not None  # kept with the peepholes (_forward)
        dzo = dzo + row(dp[2], k.c_new) * k.c_new + row(p[2], dc_new) * dc_new
    return k.b_c * dc_new + k.b_o * dzo, dc_new


def lstm_recur(
    w_h: Array,
    peephole: Optional[Array],
    h: Array,
    c: Array,
    px: Array,
    ln: Optional[LSTMNorm] = None,
) -> tuple[Array, Array]:
    """One LSTM step after the input projection: `(h, c, px) -> (h_new, c_new)`.

    Args:
      w_h: `[H, 4H]`, gate blocks i, f, g, o.
      peephole: `[3, H]` (rows i, f, o) or None.
      h, c: `[..., H]`, the previous output and cell state.
      px: `[..., 4H]`, `x @ W_x + b` for this step, same batch shape as h.
      ln: the layer-norm gains, or None for the plain step.

    Returns:
      `(h_new, c_new)`, each `[..., H]`, in the common dtype of the inputs.
    """
    if ln is not None:
        # Plain autodiff of the same equations (the coefficients of the
        # hand-written rule hold for the un-normalised step only).
        return _forward(w_h, peephole, h, c, px, ln)[0]
    # One dtype inside the custom rule; autodiff of the casts (outside) brings
    # each cotangent back to its input's dtype.
    dtype = jnp.result_type(w_h, h, c, px, *([] if peephole is None else [peephole]))
    w_h, h, c, px = (jnp.asarray(a, dtype) for a in (w_h, h, c, px))
    peephole = None if peephole is None else jnp.asarray(peephole, dtype)
    return _lstm_recur(w_h, peephole, h, c, px)


@jax.custom_jvp
def _lstm_recur(w_h, peephole, h, c, px):
    return _forward(w_h, peephole, h, c, px)[0]


@_lstm_recur.defjvp
def _jvp(primals, tangents):
    out, coef = _forward(*primals)
    assert coef is not None  # the plain step: no layer norm inside the custom rule
    return out, _tangent(coef, *tangents)

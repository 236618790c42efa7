"""The GRU's equations (the only copy) and their hand-written derivative (forward and reverse).

`_forward` is the recurrent part of the GRU step, written once; layer
normalisation of h W_h is an option of it (`ln_gain_h`, reset_after only),
differentiated by plain autodiff. The plain step is the companion of
`_lstm_rule.py`: a `jax.custom_jvp` whose tangent map is
written out on a few precomputed coefficient arrays. Forward mode (`jvp`,
`jacfwd`, `hessian`, the Newton solvers' Jacobians) evaluates it; reverse
mode (BPTT) is JAX's transpose of it, which keeps only those coefficients
per step (the previous state, r, z and three products) and sweeps the gate
gradients at once, like the hand-written backward pass it replaces.

With px = (x_r, x_z, x_n), r = sigmoid(x_r + h W_hr), z = sigmoid(x_z + h W_hz)
the share of the old state kept, and h' = z h + (1 - z) n:

    reset_after (b_hn given):  a = h W_hn + b_hn,  n = tanh(x_n + r a)
    reset_before (b_hn None):  n = tanh(x_n + (r h) W_hn)

Coefficients c_z = (h - n) z (1 - z) and s_n = (1 - z)(1 - n^2); the tangent map is

    dh' = z dh + c_z (dx_z + dh W_hz + h dW_hz) + s_n dn_pre
    reset_after:   dn_pre = dx_n + a r (1 - r) dr_pre + r (dh W_hn + h dW_hn + db_hn)
    reset_before:  dn_pre = dx_n + (h r (1 - r) dr_pre + r dh) W_hn + (r h) dW_hn
    with dr_pre = dx_r + dh W_hr + h dW_hr.

Its transpose is the backward pass: with s = s_n dh'_ the gradient at n's
pre-activation, dz_z = c_z dh'_, dx_n = s; reset_after: da = s r,
dz_r = s a r (1 - r), dW_h = h^T [dz_r, dz_z, da]; reset_before:
d(rh) = s W_hn^T, dz_r = d(rh) h r (1 - r), dW_hn = (r h)^T s.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lstmjax._arrays import row
from lstmjax._layer_norm import layer_norm
from lstmjax._typing import Array


class Coefficients(NamedTuple):
    """What the tangent map multiplies tangents by (the reverse-mode residuals)."""

    w_h: Array  # [H, 3H]
    h: Array  # [..., H], the previous state
    # [H, batch], h with batch axes merged, transposed (dW_h as a plain matmul)
    h_t: Array
    r: Array  # [..., H]
    z: Array  # [..., H]
    c_z: Array  # [..., H], (h - n) z (1 - z)
    s_n: Array  # [..., H], (1 - z)(1 - n^2)
    c_r: Array  # [..., H], a r (1 - r) (reset_after) or h r (1 - r) (reset_before)
    rh_t: Optional[Array]  # [H, batch], (r h) transposed (reset_before only)


def _flat_t(a: Array) -> Array:
    """`[..., n] -> [n, batch]` (every batch axis merged)."""
    return jnp.reshape(a, (-1, a.shape[-1])).T


def _forward(w_h, b_hn, h, px, ln_gain_h: Optional[Array] = None):
    """The GRU equations, plain autodiff-able code: `(h', Coefficients or None)`.

    With `ln_gain_h` (layer norm, reset_after only), h W_h is normalised with
    that gain before it is split into gates; the coefficients, which hold for
    the plain step only, are then None.
    """
    H = h.shape[-1]
    xr, xz, xn = jnp.split(px, 3, axis=-1)
    if b_hn is not None:
        hw = h @ w_h
        if ln_gain_h is not None:
            hw = layer_norm(hw, ln_gain_h)
        hr, hz, hn = jnp.split(hw, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        a = hn + row(b_hn, hn)
        n = jnp.tanh(xn + r * a)
        c_r, rh_t = a * r * (1.0 - r), None
    else:
        hr, hz = jnp.split(h @ w_h[:, : 2 * H], 2, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        n = jnp.tanh(xn + (r * h) @ w_h[:, 2 * H :])
        c_r, rh_t = h * r * (1.0 - r), _flat_t(r * h)
    z = jax.nn.sigmoid(xz + hz)
    if ln_gain_h is not None:
        return z * h + (1.0 - z) * n, None
    coef = Coefficients(
        w_h=w_h,
        h=h,
        h_t=_flat_t(h),
        r=r,
        z=z,
        c_z=(h - n) * z * (1.0 - z),
        s_n=(1.0 - z) * (1.0 - n * n),
        c_r=c_r,
        rh_t=rh_t,
    )
    return z * h + (1.0 - z) * n, coef


def _tangent(k: Coefficients, dw_h, db_hn, dh, dpx):
    """The linear map `(dW_h, db_hn, dh, dpx) -> dh'` at the point `k` was made at."""
    H = dh.shape[-1]
    dxr, dxz, dxn = jnp.split(dpx, 3, axis=-1)

    def h_times(a_t, w):  # a dW for the transposed residual a_t [H, batch]
        return jnp.reshape(a_t.T @ w, dh.shape[:-1] + (w.shape[-1],))

    if k.rh_t is None:
        dhr, dhz, dhn = jnp.split(dh @ k.w_h + h_times(k.h_t, dw_h), 3, axis=-1)
        dn_pre = dxn + k.c_r * (dxr + dhr) + k.r * (dhn + row(db_hn, dhn))
    else:
        dhr, dhz = jnp.split(dh @ k.w_h[:, : 2 * H] + h_times(k.h_t, dw_h[:, : 2 * H]), 2, axis=-1)
        drh = k.c_r * (dxr + dhr) + k.r * dh
        dn_pre = dxn + drh @ k.w_h[:, 2 * H :] + h_times(k.rh_t, dw_h[:, 2 * H :])
    return k.z * dh + k.c_z * (dxz + dhz) + k.s_n * dn_pre


def gru_recur(
    w_h: Array,
    b_hn: Optional[Array],
    h: Array,
    px: Array,
    ln_gain_h: Optional[Array] = None,
) -> Array:
    """One GRU step after the input projection: `(h, px) -> h_new`.

    Args:
      w_h: `[H, 3H]`, gate blocks r, z, n.
      b_hn: `[H]`, the bias inside the reset (reset_after); None selects the
        reset-before form of Cho et al. (2014), as in `lstmjax.gru`.
      h: `[..., H]`, the previous state.
      px: `[..., 3H]`, `x @ W_x + b` for this step, same batch shape as h.
      ln_gain_h: `[3H]`, the layer-norm gain of h W_h (reset_after only), or
        None for the plain step.

    Returns:
      h_new `[..., H]`, in the common dtype of the inputs.
    """
    if ln_gain_h is not None:
        if b_hn is None:
            raise ValueError("gru_recur: layer norm needs the reset_after form (b_hn given).")
        # Plain autodiff of the same equations (the coefficients of the
        # hand-written rule hold for the un-normalised step only).
        return _forward(w_h, b_hn, h, px, ln_gain_h)[0]
    # One dtype inside the custom rule; autodiff of the casts (outside) brings
    # each cotangent back to its input's dtype.
    dtype = jnp.result_type(w_h, h, px, *([] if b_hn is None else [b_hn]))
    w_h, h, px = (jnp.asarray(a, dtype) for a in (w_h, h, px))
    b_hn = None if b_hn is None else jnp.asarray(b_hn, dtype)
    return _gru_recur(w_h, b_hn, h, px)


@jax.custom_jvp
def _gru_recur(w_h, b_hn, h, px):
    return _forward(w_h, b_hn, h, px)[0]


@_gru_recur.defjvp
def _jvp(primals, tangents):
    out, coef = _forward(*primals)
    assert coef is not None  # the plain step: no layer norm inside the custom rule
    return out, _tangent(coef, *tangents)

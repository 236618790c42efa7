"""The compiled fused kernels (`csrc/fused_rnn.cc`) as differentiable JAX functions.

`pip install` builds `lstmjax/_fused_cpu*.so` where a C++17 compiler is found
(an optional extension: without one the package installs and `lj.Fused`
falls back to the scan). It is a plain shared library, loaded here with
ctypes, whose XLA FFI handlers are registered with JAX on first use:

- `lstm(xs, w_x, w_h, b, h0, c0)` -> `(ys, h_T, c_T)`, the plain LSTM;
- `gru(xs, w_x, w_h, b, b_hn, h0)` -> `(ys, h_T)`, the GRU with the reset
  after the matmul.

Both take time-major `xs` `[T, B, I]` and return `ys` `[T, B, H]`, in float32
or float64 (every operand cast to their common dtype), and an optional step
mask `valid` `[T, B]` (a masked step keeps the carry and outputs zero). Reverse mode is a
`custom_vjp` whose forward keeps what BPTT needs (the gate activations, and
the LSTM's cell states) and whose backward is the kernel's own BPTT pass; it
skips `dxs` when `xs` is not differentiated and never builds a zero
cotangent for `ys` (symbolic zeros). `vmap` runs the kernel once per
batched element (`vmap_method="sequential"`). Forward mode is not defined
here: `lj.Fused` sends forward-mode calls to the scan.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from lstmjax._typing import Array

LIBRARY = "_fused_cpu"
# target name -> exported handler symbol
TARGETS = {
    "lstmjax_lstm_forward": "LstmjaxLstmForward",
    "lstmjax_lstm_forward_train": "LstmjaxLstmForwardTrain",
    "lstmjax_lstm_backward": "LstmjaxLstmBackward",
    "lstmjax_gru_forward": "LstmjaxGruForward",
    "lstmjax_gru_forward_train": "LstmjaxGruForwardTrain",
    "lstmjax_gru_backward": "LstmjaxGruBackward",
}
ISA_NAMES = {0: "baseline x86-64", 1: "AVX2+FMA", 2: "AVX-512"}
DTYPES = (jnp.float32, jnp.float64)


def library_path() -> Optional[Path]:
    """Where the built library lies, or None when it was not built."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / (LIBRARY + suffix)
        if path.is_file():
            return path
    return None


@functools.cache
def load() -> tuple[Optional[ctypes.CDLL], str]:
    """`(library, "")` with its handlers registered, or `(None, why it cannot be used)`."""
    path = library_path()
    if path is None:
        return None, (
            "the compiled extension lstmjax._fused_cpu is not built (`pip install -e .` builds "
            "it where a C++17 compiler is found; the install skips it otherwise)"
        )
    try:
        lib = ctypes.CDLL(str(path))
        for target, symbol in TARGETS.items():
            capsule = jax.ffi.pycapsule(getattr(lib, symbol))
            jax.ffi.register_ffi_target(target, capsule, platform="cpu")
    except (OSError, AttributeError) as e:
        return None, f"the compiled extension {path.name} could not be loaded ({e})"
    return lib, ""


def isa() -> Optional[str]:
    """The instruction set the kernel chose on this CPU, or None without the library."""
    lib, _ = load()
    return None if lib is None else ISA_NAMES[int(lib.LstmjaxFusedIsa())]


def require() -> None:
    """Load and register the kernels, or raise RuntimeError saying why they cannot run."""
    lib, why = load()
    if lib is None:
        raise RuntimeError(f"lstmjax's fused CPU kernels are unavailable: {why}.")


def _call(target: str, outputs, *args, **attributes):
    return jax.ffi.ffi_call(target, outputs, vmap_method="sequential")(*args, **attributes)


def _shape(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _values(primals):
    """CustomVJPPrimal values (symbolic_zeros=True gives the fwd rule those)."""
    return tuple(p.value for p in primals)


def _cotangent(ct, like: Array) -> Array:
    return jnp.zeros(like.shape, like.dtype) if isinstance(ct, SymbolicZero) else ct


# ------------------------------------------------------------------ LSTM


@functools.cache
def _lstm_core(threads: int, has_valid: bool):
    """The LSTM over a sequence for one setting, with its kernel's BPTT.

    `valid` is the step mask `[T, B]` (uint8) with `has_valid`, else a `[1]`
    placeholder; where it is 0 the step keeps the carry, and `ys` there is the
    kept `h` (the caller zeroes those outputs).
    """
    options = {"threads": threads, "has_valid": np.bool_(has_valid)}

    def outputs(xs, w_h):
        T, B, _ = xs.shape
        H, dt = w_h.shape[0], xs.dtype
        return [_shape((T, B, H), dt), _shape((B, H), dt), _shape((B, H), dt)]

    def infer(xs, w_x, w_h, b, h0, c0, valid):
        out = outputs(xs, w_h)
        return tuple(_call("lstmjax_lstm_forward", out, xs, w_x, w_h, b, h0, c0, valid, **options))

    def forward(xs, w_x, w_h, b, h0, c0, valid):
        need_dxs = xs.perturbed
        xs, w_x, w_h, b, h0, c0, valid = _values((xs, w_x, w_h, b, h0, c0, valid))
        T, B, _ = xs.shape
        H, dt = w_h.shape[0], xs.dtype
        out = outputs(xs, w_h) + [_shape((T, B, 4 * H), dt), _shape((T, B, H), dt)]
        ys, hT, cT, acts, cs = _call(
            "lstmjax_lstm_forward_train", out, xs, w_x, w_h, b, h0, c0, valid, **options
        )
        # need_dxs is static: kept in the residuals' structure (a dict key), not as an array.
        flag = {"need_dxs": None} if need_dxs else {}
        return (ys, hT, cT), (xs, w_x, w_h, h0, c0, ys, acts, cs, valid, flag)

    def backward(res, cts):
        xs, w_x, w_h, h0, c0, ys, acts, cs, valid, flag = res
        need_dxs = "need_dxs" in flag
        dys, dhT, dcT = cts
        has_dys = not isinstance(dys, SymbolicZero)
        dt = xs.dtype
        dys = dys if has_dys else jnp.zeros((1,), dt)
        dhT, dcT = _cotangent(dhT, h0), _cotangent(dcT, c0)
        G = w_h.shape[1]
        out = [
            _shape(xs.shape if need_dxs else (1,), dt),
            _shape(w_x.shape, dt),
            _shape(w_h.shape, dt),
            _shape((G,), dt),
            _shape(h0.shape, dt),
            _shape(c0.shape, dt),
        ]
        dxs, dw_x, dw_h, db, dh0, dc0 = _call(
            "lstmjax_lstm_backward", out, xs, w_x, w_h, h0, c0, ys, acts, cs, dys, dhT, dcT,
            valid, need_dxs=np.bool_(need_dxs), has_dys=np.bool_(has_dys), **options,
        )  # fmt: skip
        return (dxs if need_dxs else None), dw_x, dw_h, db, dh0, dc0, None

    core = jax.custom_vjp(infer)
    core.defvjp(forward, backward, symbolic_zeros=True)
    return core


def _mask(valid: Optional[Array]) -> Array:
    return jnp.zeros((1,), jnp.uint8) if valid is None else jnp.asarray(valid, jnp.uint8)


def _zero_masked(ys: Array, valid: Optional[Array]) -> Array:
    """Outputs of masked steps are zero (the kernel leaves the kept carry there)."""
    return ys if valid is None else jnp.where(valid[..., None], ys, jnp.zeros_like(ys))


def lstm(
    xs, w_x, w_h, b, h0, c0, *, threads: int, valid: Optional[Array] = None
) -> tuple[Array, Array, Array]:
    """The plain LSTM over time-major `xs` `[T, B, I]`: `(ys [T, B, H], h_T, c_T)`.

    `threads`: batch chunks run side by side (0: XLA's intra-op pool size).
    `valid`: optional bool `[T, B]`, False where a step keeps the carry and
    outputs zero (`_sequence.masked_recur`'s meaning).
    """
    require()
    dtype = jnp.result_type(xs, w_x, w_h, b, h0, c0)
    args = [jnp.asarray(a, dtype) for a in (xs, w_x, w_h, b, h0, c0)]
    ys, hT, cT = _lstm_core(threads, valid is not None)(*args, _mask(valid))
    return _zero_masked(ys, valid), hT, cT


# ------------------------------------------------------------------ GRU


@functools.cache
def _gru_core(threads: int, has_valid: bool):
    """The GRU (reset after the matmul) over a sequence, with its kernel's BPTT (`valid` as
    in `_lstm_core`)."""
    options = {"threads": threads, "has_valid": np.bool_(has_valid)}

    def outputs(xs, w_h):
        T, B, _ = xs.shape
        H, dt = w_h.shape[0], xs.dtype
        return [_shape((T, B, H), dt), _shape((B, H), dt)]

    def infer(xs, w_x, w_h, b, b_hn, h0, valid):
        out = outputs(xs, w_h)
        return tuple(_call("lstmjax_gru_forward", out, xs, w_x, w_h, b, b_hn, h0, valid, **options))

    def forward(xs, w_x, w_h, b, b_hn, h0, valid):
        need_dxs = xs.perturbed
        xs, w_x, w_h, b, b_hn, h0, valid = _values((xs, w_x, w_h, b, b_hn, h0, valid))
        T, B, _ = xs.shape
        H, dt = w_h.shape[0], xs.dtype
        out = outputs(xs, w_h) + [_shape((T, B, 4 * H), dt)]
        ys, hT, acts = _call(
            "lstmjax_gru_forward_train", out, xs, w_x, w_h, b, b_hn, h0, valid, **options
        )
        flag = {"need_dxs": None} if need_dxs else {}
        return (ys, hT), (xs, w_x, w_h, h0, ys, acts, valid, flag)

    def backward(res, cts):
        xs, w_x, w_h, h0, ys, acts, valid, flag = res
        need_dxs = "need_dxs" in flag
        dys, dhT = cts
        has_dys = not isinstance(dys, SymbolicZero)
        dt = xs.dtype
        dys = dys if has_dys else jnp.zeros((1,), dt)
        dhT = _cotangent(dhT, h0)
        H, G = w_h.shape
        out = [
            _shape(xs.shape if need_dxs else (1,), dt),
            _shape(w_x.shape, dt),
            _shape(w_h.shape, dt),
            _shape((G,), dt),
            _shape((H,), dt),
            _shape(h0.shape, dt),
        ]
        dxs, dw_x, dw_h, db, db_hn, dh0 = _call(
            "lstmjax_gru_backward", out, xs, w_x, w_h, h0, ys, acts, dys, dhT, valid,
            need_dxs=np.bool_(need_dxs), has_dys=np.bool_(has_dys), **options,
        )  # fmt: skip
        return (dxs if need_dxs else None), dw_x, dw_h, db, db_hn, dh0, None

    core = jax.custom_vjp(infer)
    core.defvjp(forward, backward, symbolic_zeros=True)
    return core


def gru(
    xs, w_x, w_h, b, b_hn, h0, *, threads: int, valid: Optional[Array] = None
) -> tuple[Array, Array]:
    """The GRU (reset after the matmul) over time-major `xs` `[T, B, I]`: `(ys, h_T)`
    (`threads`, `valid` as in `lstm`)."""
    require()
    dtype = jnp.result_type(xs, w_x, w_h, b, b_hn, h0)
    args = [jnp.asarray(a, dtype) for a in (xs, w_x, w_h, b, b_hn, h0)]
    ys, hT = _gru_core(threads, valid is not None)(*args, _mask(valid))
    return _zero_masked(ys, valid), hT

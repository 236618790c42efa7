"""The compiled fused kernels (`csrc/fused_rnn.cc`): loading them, and one call of each.

`pip install` builds `lstmjax/_fused_cpu*.so` where a C++17 compiler is found
(an optional extension: without one the package installs and `lj.Fused`
falls back to the scan). It is a plain shared library, loaded here with
ctypes, whose XLA FFI handlers are registered with JAX on first use.

Each cell has three kernels (`Kernel`), all on time-major arrays in float32
or float64 with optional step flags `flags` `[T, B]` (uint8, `encode_flags`):
bit 0 set where the step is real (clear: a masked step keeps the carry, and
`ys` there is the kept `h`), bit 1 where the sequence restarts from `carry0`
before the step (a reset):

- `infer(xs, weights, carry0, flags)` -> `(ys, carry_T)`;
- `train(...)`, the same, and what BPTT keeps (`extras`: the gate
  activations, and the LSTM's cell states);
- `backward(xs, weights, carry0, flags, ys, extras, dys, dcarry_T)`, BPTT:
  `(dxs, dweights, dcarry0)`.

Every operand may carry the same leading axes in front of its own shape
(members of an ensemble, or any `jax.vmap`): the kernel then runs once per
member, in order, each split over the threads as usual, with no copies. An
`ffi_call` under `jax.vmap` gives them that way (`vmap_method="broadcast_all"`).

The LSTM's weights are `(w_x, w_h, b)` (and its peepholes `[3, H]`, rows
i, f, o, with `peephole=True`) and its carry `(h, c)`; the GRU's
`(w_x, w_h, b, b_hn)` with the reset after the matmul (`(w_x, w_h, b)`
with the reset before it, `reset_after=False`) and `(h,)`. The derivative
rules that make these differentiable live in `_fused_ad.py`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib.machinery
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

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


STEP, RESTART = 1, 2  # the bits of the step flags


def encode_flags(valid, reset):
    """The kernel's step flags `[T, B]` uint8 from the masks (bool `[T, B]` or None), or None."""
    if valid is None and reset is None:
        return None
    flags = jnp.full(next(m for m in (valid, reset) if m is not None).shape, STEP, jnp.uint8)
    if valid is not None:
        flags = jnp.where(valid, flags, jnp.uint8(0))
    if reset is not None:
        flags = flags | jnp.where(reset, jnp.uint8(RESTART), jnp.uint8(0))
    return flags


def decode_flags(flags):
    """`(valid, reset)`, bool `[T, B]` each: the inverse of `encode_flags`."""
    return (flags & STEP) != 0, (flags & RESTART) != 0


def _call(target: str, outputs, *args, **attributes):
    return jax.ffi.ffi_call(target, outputs, vmap_method="broadcast_all")(*args, **attributes)


def _shape(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One cell's three kernels, with the shapes of what they return.

    Every target takes four weight operands `(w_x, w_h, b, w4)`, the fourth
    being the LSTM's peepholes `[3, H]` or the GRU's `b_hn` `[H]`, and the
    backward target returns a gradient for each; where the cell has no
    fourth weight (`n_weights` 3) the operand and its gradient are `[1]`
    placeholders, and the attribute says so.

    Attributes:
      cell: "lstm" or "gru" (the FFI targets are `lstmjax_{cell}_forward`,
        `..._forward_train` and `..._backward`).
      n_weights: the cell's weight arrays: 3 (w_x, w_h, b) or 4 (and the
        peepholes, or b_hn with the GRU's reset after the product).
      n_carry: carry arrays, each `[B, H]` (LSTM: h, c; GRU: h).
      n_extras: the arrays BPTT keeps besides `ys` (LSTM: the gate
        activations `[T, B, 4H]` and the cell states `[T, B, H]`; GRU: the
        gate values `[T, B, 4H]`).
      attributes: the targets' cell options, `(name, value)` pairs (LSTM:
        `peephole`; GRU: `reset_after`).
    """

    cell: str
    n_weights: int
    n_carry: int
    n_extras: int
    attributes: tuple[tuple[str, bool], ...] = ()

    def _attributes(self, **attributes):
        return {**attributes, **{k: np.bool_(v) for k, v in self.attributes}}

    def _weights(self, weights):
        """The four weight operands (a `[1]` placeholder for an absent fourth)."""
        return (*weights, *[jnp.zeros((1,), weights[0].dtype)] * (4 - len(weights)))

    def _outputs(self, xs, weights, train: bool):
        *lead, T, B, _ = xs.shape
        H, dt = weights[1].shape[-2], xs.dtype
        out = [_shape((*lead, T, B, H), dt)] + [_shape((*lead, B, H), dt)] * self.n_carry
        if train:
            out += [_shape((*lead, T, B, 4 * H), dt), _shape((*lead, T, B, H), dt)]
            out = out[: 1 + self.n_carry + self.n_extras]
        return out

    def infer(self, xs, weights, carry0, flags, *, threads: int, has_flags: bool):
        """`(ys [T, B, H], carry_T)`."""
        out = _call(
            f"lstmjax_{self.cell}_forward", self._outputs(xs, weights, False),
            xs, *self._weights(weights), *carry0, flags,
            **self._attributes(threads=threads, has_flags=np.bool_(has_flags)),
        )  # fmt: skip
        return out[0], tuple(out[1:])

    def train(self, xs, weights, carry0, flags, *, threads: int, has_flags: bool):
        """`(ys, carry_T, extras)`: `infer`'s results and what `backward` needs."""
        out = _call(
            f"lstmjax_{self.cell}_forward_train", self._outputs(xs, weights, True),
            xs, *self._weights(weights), *carry0, flags,
            **self._attributes(threads=threads, has_flags=np.bool_(has_flags)),
        )  # fmt: skip
        n = 1 + self.n_carry
        return out[0], tuple(out[1:n]), tuple(out[n:])

    def backward(
        self, xs, weights, carry0, flags, ys, extras, dys, dcarry, *,
        threads: int, has_flags: bool, need_dxs: bool,
    ):  # fmt: skip
        """BPTT: `(dxs or None, dweights, dcarry0)`.

        `dys` None: no cotangent reaches the outputs (only the final carry's);
        `need_dxs` False: `dxs` is not computed.
        """
        dt = xs.dtype
        w_x, w_h, _, w4 = self._weights(weights)
        out = [_shape(xs.shape if need_dxs else (1,), dt)]
        out += [_shape(w.shape, dt) for w in (w_x, w_h, weights[2], w4)]
        out += [_shape(c.shape, dt) for c in carry0]
        grads = _call(
            f"lstmjax_{self.cell}_backward", out,
            xs, w_x, w_h, w4, *carry0, ys, *extras,
            jnp.zeros((1,), dt) if dys is None else dys, *dcarry, flags,
            **self._attributes(
                threads=threads, need_dxs=np.bool_(need_dxs), has_dys=np.bool_(dys is not None),
                has_flags=np.bool_(has_flags),
            ),
        )  # fmt: skip
        dweights, dcarry0 = grads[1 : 1 + self.n_weights], grads[5:]
        return (grads[0] if need_dxs else None), tuple(dweights), tuple(dcarry0)


LSTM = Kernel("lstm", n_weights=3, n_carry=2, n_extras=2, attributes=(("peephole", False),))
LSTM_PEEPHOLE = Kernel("lstm", n_weights=4, n_carry=2, n_extras=2, attributes=(("peephole", True),))
GRU = Kernel("gru", n_weights=4, n_carry=1, n_extras=1, attributes=(("reset_after", True),))
GRU_RESET_BEFORE = Kernel(
    "gru", n_weights=3, n_carry=1, n_extras=1, attributes=(("reset_after", False),)
)

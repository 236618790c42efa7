"""The optimizer's identity, stored with each checkpoint and checked on resume.

Resuming a run with another optimizer, or the same one at another learning
rate, would silently train a different run under the old run's name. The
state's *structure* catches a change of kind when the states differ in
type or fields (`adam` against `sgd`, `adam` against `adamw`); it cannot see
hyperparameters, which live in closures and not in the state. Two more
things can:

- a *fingerprint*: any string the user sets (`train.Checkpointing(fingerprint=...)`),
  compared verbatim;
- a *probe*: the optimizer's own behaviour. `probe_optimizer` runs
  `init` and three `update`s on a small deterministic stand-in of the
  parameters (the same tree, every axis cut to at most 8, values of size
  about 4 so that weight decay shows) with fixed
  gradients of three scales (1, 1e-3, 30), and keeps per update the norm of
  the update and its cosine with a fixed direction.

What the probe catches: a different kind of optimizer, the learning rate and
anything that scales the first updates (momentum, betas, weight decay,
clipping that the probe's gradients cross, a warm-up's length). What it
cannot catch: changes that alter the first three updates by less than
2 parts in 10^5 (Adam's eps at 1e-8 against 1e-7; a schedule that differs only
after step 3, such as a cosine decay's horizon), and anything outside the
optimizer (the loss, the model, the data). For those,
set a fingerprint.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._checkpointing.errors import (
    CheckpointWarning,
    OptimizerMismatchError,
    mismatch_advice,
)
from lstmjax._checkpointing.integrity import describe_structure
from lstmjax._typing import Array

_MAX_PROBE_AXIS = 8
_PROBE_SCALES = (1.0, 1e-3, 30.0)
# Same machine: bit-identical. Another device or XLA version may round the
# probe's few float32 operations differently, far below these. Norms are
# compared relatively, cosines (which may lie near 0) absolutely.
_PROBE_RTOL = 2e-5
_COSINE_ATOL = 2e-6


class OptimizerIdentity(NamedTuple):
    """What a checkpoint records about the optimizer that wrote it.

    Attributes:
      structure: the optimizer state's structure (`describe_structure`).
      fingerprint: the user's own string, or None.
      probe: `[norm, cosine]` of each probe update (6 floats), or None when
        no optimizer was given.
    """

    structure: str
    fingerprint: Optional[str] = None
    probe: Optional[list] = None


def _pattern(shape: tuple, dtype, phase: float, freq: float) -> np.ndarray:
    size = math.prod(shape)
    return np.cos(freq * np.arange(size) + phase).reshape(shape).astype(dtype)


def _stand_in(params: Any, full: bool) -> tuple[Any, list[Array]]:
    """Deterministic probe parameters: the same tree, each axis cut to <= 8 unless `full`."""

    def one(i, leaf):
        shape = (
            tuple(np.shape(leaf))
            if full
            else tuple(min(d, _MAX_PROBE_AXIS) for d in np.shape(leaf))
        )
        return jnp.asarray(4.0 * _pattern(shape, jnp.result_type(leaf), 0.3 * i, 0.37))

    leaves, treedef = jax.tree_util.tree_flatten(params)
    return treedef, [one(i, leaf) for i, leaf in enumerate(leaves)]


def _summary(updates: list, direction: list) -> list:
    flat = np.concatenate([np.ravel(np.asarray(u, np.float64)) for u in updates] or [np.zeros(0)])
    ref = np.concatenate([np.ravel(d) for d in direction] or [np.zeros(0)])
    norm = float(np.linalg.norm(flat))
    cosine = float(flat @ ref / (norm * np.linalg.norm(ref))) if norm > 0 else 0.0
    return [norm, cosine]


def _run_probe(optimizer, params: Any, full: bool) -> list:
    treedef, leaves = _stand_in(params, full)
    probe_params = jax.tree_util.tree_unflatten(treedef, leaves)
    opt_state = optimizer.init(probe_params)
    direction = [_pattern(np.shape(x), np.float64, 1.1 * i, 0.29) for i, x in enumerate(leaves)]
    out = []
    for step, scale in enumerate(_PROBE_SCALES):
        grads = jax.tree_util.tree_unflatten(
            treedef,
            [
                jnp.asarray(scale * _pattern(np.shape(x), jnp.result_type(x), 1.3 * i + step, 0.61))
                for i, x in enumerate(leaves)
            ],
        )
        updates, opt_state = optimizer.update(grads, opt_state, probe_params)
        updates = jax.tree_util.tree_leaves(updates)
        probe_params = jax.tree_util.tree_unflatten(
            treedef,
            [p + u for p, u in zip(jax.tree_util.tree_leaves(probe_params), updates, strict=True)],
        )
        out.extend(_summary(updates, direction))
    return out


def probe_optimizer(optimizer, params: Any) -> Optional[list]:
    """Six numbers that characterise `optimizer`'s first three updates (see module docstring).

    Returns None, with a warning, if the optimizer cannot run on the stand-in
    parameters (then only the state's structure and a fingerprint are checked).
    """
    errors = []
    for full in (False, True):  # full-size stand-ins only if the small ones do not fit
        try:
            return _run_probe(optimizer, params, full)
        except Exception as error:  # any failure: fall back, say why
            errors.append(f"{type(error).__name__}: {str(error)[:200]}")
    warnings.warn(
        f"could not probe the optimizer ({errors[-1]}); a resume will check only its state's "
        "structure and the fingerprint.",
        CheckpointWarning,
        stacklevel=3,
    )
    return None


def optimizer_identity(
    opt_state: Any, optimizer=None, fingerprint: Optional[str] = None, params: Any = None
) -> OptimizerIdentity:
    """The identity of the optimizer behind `opt_state` (probe only if `optimizer` is given)."""
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise TypeError(f"fingerprint must be a str or None; got {fingerprint!r}.")
    probe = None if optimizer is None else probe_optimizer(optimizer, params)
    return OptimizerIdentity(describe_structure(opt_state), fingerprint, probe)


def _probe_text(probe: list) -> str:
    norms = ", ".join(f"{n:.4g}" for n in probe[0::2])
    return f"update norms [{norms}]"


def _probes_agree(old: np.ndarray, new: np.ndarray) -> bool:
    norms = np.allclose(old[0::2], new[0::2], rtol=_PROBE_RTOL, atol=0.0)
    return norms and np.allclose(old[1::2], new[1::2], rtol=0.0, atol=_COSINE_ATOL)


def check_optimizer(
    stored: dict, current: OptimizerIdentity, where: str, directory=None
) -> list[str]:
    """Raise `OptimizerMismatchError` if `stored` and `current` differ in what both record.

    `where` names the checkpoint in the message, `directory` (None: not known)
    the directory in its advice (`errors.mismatch_advice`). Returns the parts
    that were compared (for the resume notice).
    """
    hint = mismatch_advice(
        directory,
        "build the state and the step with the optimizer and hyperparameters it was written with",
    )
    if stored.get("structure") != current.structure:
        raise OptimizerMismatchError(
            f"{where} was written by an optimizer whose state is {stored.get('structure')}, "
            f"but the optimizer now has state {current.structure}.{hint}"
        )
    compared = ["state structure"]
    if stored.get("fingerprint") is not None and current.fingerprint is not None:
        if stored["fingerprint"] != current.fingerprint:
            advice = mismatch_advice(
                directory,
                "use the optimizer it was written with and "
                f"Checkpointing(..., fingerprint={stored['fingerprint']!r})",
            )
            raise OptimizerMismatchError(
                f"{where} was written with fingerprint {stored['fingerprint']!r}, "
                f"but this run's is {current.fingerprint!r}.{advice}"
            )
        compared.append("fingerprint")
    if stored.get("probe") is not None and current.probe is not None:
        old, new = np.asarray(stored["probe"]), np.asarray(current.probe)
        if old.shape != new.shape or not _probes_agree(old, new):
            ratio = ""
            if old.shape == new.shape and old[0] > 0:
                ratio = f" (first update {new[0] / old[0]:.4g} times the stored one)"
            raise OptimizerMismatchError(
                f"{where} was written by a different optimizer or different hyperparameters "
                f"(learning rate, momentum, ...): on the same probe gradients the stored "
                f"optimizer made {_probe_text(stored['probe'])}, this one makes "
                f"{_probe_text(current.probe)}{ratio}.{hint}"
            )
        compared.append("probe of its updates")
    return compared

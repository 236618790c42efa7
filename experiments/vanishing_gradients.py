"""Vanishing gradients: ||dL/d carry_{T-k}|| against k for RNN, LSTM and GRU.

The headline experiment. A loss on the last output is differentiated with
respect to the carry at every step (`lstmjax.diagnostics.carry_grad_norms`,
one backward pass), averaged over a batch, and divided by its value at
k = 0. Three settings:

  1. the anchors' setting, at initialisation: hidden 64, input 64, inputs
     x ~ N(0, 1), default initialisation (orthogonal recurrent weights,
     LeCun-normal input weights), loss = (last output . u - target)^2 with a
     fixed random readout u; float64;
  2. the same cells with weak inputs, x ~ N(0, 0.1^2): the decay rate
     depends on how hard the inputs drive the units into saturation;
  3. after training on the adding problem (Adam, clipped at norm 1): the
     training loss itself, on a fresh batch of the task.

For the LSTM the carry is (h, c) and the curve is the norm of both together,
sqrt(||dL/dh||^2 + ||dL/dc||^2); the JSON also holds h and c alone.

    python experiments/vanishing_gradients.py [--quick] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _common import (
    Report,
    anchor,
    enable_x64,
    fmt,
    parse_args,
    progress,
    publish,
    seed_everything,
)

import lstmjax as lj
from lstmjax import diagnostics, losses, tasks, train

NAME = "vanishing_gradients"

CELLS: dict[str, Callable[..., lj.Cell]] = {
    "rnn": lambda h, dtype: lj.rnn(h, dtype=dtype),
    "lstm": lambda h, dtype: lj.lstm(h, forget_bias=1.0, dtype=dtype),
    "lstm_forget_bias_0": lambda h, dtype: lj.lstm(h, forget_bias=0.0, dtype=dtype),
    "gru": lambda h, dtype: lj.gru(h, dtype=dtype),
    "gru_reset_before": lambda h, dtype: lj.gru(h, reset_after=False, dtype=dtype),
    "lstm_ln": lambda h, dtype: lj.lstm(h, layer_norm=True, dtype=dtype),
    # Leaky tanh units, alpha = dt / tau = 0.1: the Euler step's Jacobian is
    # (1 - alpha) I + alpha diag(act') W_h, close to I when alpha is small.
    "ctrnn": lambda h, dtype: lj.ctrnn(h, tau=10.0, dt=1.0, dtype=dtype),
}


@cache
def make_cell(label: str, hidden: int, dtype) -> lj.Cell:
    """One `Cell` object per configuration, so that jitted functions taking it as a
    static argument compile once (a new Cell holds new closures and hashes anew)."""
    return CELLS[label](hidden, dtype)


TRAINED = ("rnn", "lstm", "lstm_forget_bias_0", "gru")  # cells trained on the adding problem
ANCHOR_K = 100


# One compilation of the task generator for all models (a Python loop calls it).
adding_batch = jax.jit(tasks.adding_problem, static_argnums=(1, 2))


class Model(NamedTuple):
    cell: Any  # the cell's params
    readout: lj.DenseParams  # [H, 1]


def curve(norms: diagnostics.CarryGradNorms) -> dict:
    """Batch-mean ||dL/d carry_{T-1-k}|| for k = 0..T-1, raw and relative to k = 0."""
    out = {"grad_norm": np.asarray(norms.mean)[::-1]}  # index k = distance from the end
    if isinstance(norms.fields_mean, lj.LSTMCarry):
        out["grad_norm_h"] = np.asarray(norms.fields_mean.h)[::-1]
        out["grad_norm_c"] = np.asarray(norms.fields_mean.c)[::-1]
    out["relative"] = out["grad_norm"] / out["grad_norm"][0]
    out["distance"] = np.arange(len(out["grad_norm"]))
    return out


@partial(jax.jit, static_argnums=0)
def readout_norms(cell: lj.Cell, params, xs, w, b, target) -> diagnostics.CarryGradNorms:
    """Carry gradient norms of the loss (last output . w + b - target)^2, per example.

    xs: `[B, T, I]`; w: `[H]`; b: scalar; target: `[B]`. The arrays are
    arguments (not closed over) so that one compilation serves every call
    with the same shapes.
    """

    def loss_fn(ys):
        return jnp.square(ys[:, -1] @ w + b - target)

    return diagnostics.carry_grad_norms(cell, params, xs, loss_fn)


def cells_for(config: dict) -> list[str]:
    return list(CELLS) if config["all_cells"] else list(TRAINED)


def init_curves(key, config: dict, input_scale: float, bar) -> dict:
    """Curves at initialisation, inputs N(0, input_scale^2), for every cell."""
    H, I, T, B = config["hidden"], config["inputs"], config["steps"], config["batch"]
    kp, kx, ku, ky = jax.random.split(key, 4)
    xs = input_scale * jax.random.normal(kx, (B, T, I), jnp.float64)
    u = jax.random.normal(ku, (H,), jnp.float64) / np.sqrt(H)
    target = jax.random.normal(ky, (B,), jnp.float64)
    out = {}
    for label in cells_for(config):
        cell = make_cell(label, H, jnp.float64)
        params = cell.init(kp, I)
        out[label] = curve(readout_norms(cell, params, xs, u, jnp.zeros((), jnp.float64), target))
        bar.update()
    return out


def train_adding(key, label: str, config: dict, bar) -> tuple[Model, dict]:
    """Train cell + linear readout on the adding problem; returns params and history."""
    H, T, B = config["hidden"], config["steps"], config["train_batch"]
    cell, readout = make_cell(label, H, jnp.float32), lj.dense(1)
    kc, kr, ks, kd, kt = jax.random.split(key, 5)
    params = Model(cell.init(kc, 2), readout.init(kr, H))

    def apply_fn(p: Model, xs):
        ys, _ = lj.unroll(cell, p.cell, xs)
        return readout.apply(p.readout, ys[:, -1])

    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(config["learning_rate"]))
    step = train.make_train_step(apply_fn, losses.mse, optimizer)
    state = train.init_state(params, optimizer, key=ks)
    history = {"step": [], "loss": [], "grad_norm": []}
    for i in range(config["train_steps"]):
        state, metrics = step(state, adding_batch(jax.random.fold_in(kd, i), B, T))
        if i % config["log_every"] == 0 or i == config["train_steps"] - 1:
            history["step"].append(i)
            history["loss"].append(float(metrics["loss"]))
            history["grad_norm"].append(float(metrics["grad_norm"]))
        bar.update()
    test_xs, test_ys = adding_batch(kt, 1000, T)
    history["test_mse"] = float(losses.mse(apply_fn(state.params, test_xs), test_ys))
    return state.params, history


def trained_curve(key, label: str, params: Model, config: dict) -> dict:
    """The curve of the adding-problem loss for trained params (measured in float64)."""
    cell = make_cell(label, config["hidden"], jnp.float64)
    p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    xs, ys = tasks.adding_problem(key, config["batch"], config["steps"], dtype=jnp.float64)
    return curve(readout_norms(cell, p.cell, xs, p.readout.w[:, 0], p.readout.b[0], ys[:, 0]))


def anchors_of(curves: dict) -> list[dict]:
    k = ANCHOR_K
    rnn, lstm, fb0 = (curves[n]["relative"][k] for n in ("rnn", "lstm", "lstm_forget_bias_0"))
    return [
        anchor(f"tanh RNN: relative grad norm at k = {k}", "< 1e-15", rnn, rnn < 1e-15),
        anchor(f"LSTM (forget bias 1) / RNN at k = {k}", ">= 1e6", lstm / rnn, lstm / rnn >= 1e6),
        anchor(
            f"LSTM (forget bias 0) / RNN at k = {k}",
            "about 1: within 1e-3..1e3 (vanishes as fast as the RNN)",
            fb0 / rnn,
            1e-3 <= fb0 / rnn <= 1e3,
        ),
    ]


def decay_per_step(c: dict, k: int = ANCHOR_K) -> float:
    """Geometric-mean factor by which the gradient shrinks per step over k steps."""
    return float(c["relative"][k] ** (1.0 / k))


STYLE = {
    "rnn": ("C3", "-"),
    "lstm": ("C0", "-"),
    "lstm_forget_bias_0": ("C0", "--"),
    "gru": ("C2", "-"),
    "gru_reset_before": ("C2", ":"),
    "lstm_ln": ("C1", "-"),
    "ctrnn": ("C4", "-"),
}


def plot_curves(ax, curves: dict, title: str) -> None:
    for label, c in curves.items():
        color, ls = STYLE[label]
        ax.semilogy(c["distance"], c["relative"], color=color, ls=ls, label=label)
    ax.axvline(ANCHOR_K, color="gray", lw=0.8, ls=":")
    ax.axhline(1e-15, color="gray", lw=0.8, ls=":")
    ax.set(title=title, xlabel="k (steps back from the last output)")
    ax.set_ylabel(r"$\|\partial L / \partial\,\mathrm{carry}_{T-k}\|$ / value at k = 0")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def plot(result: dict):
    cfg = result["config"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5), layout="constrained")
    plot_curves(
        axes[0, 0],
        result["curves"],
        f"At initialisation: H = {cfg['hidden']}, inputs N(0, 1) (anchor setting)",
    )
    plot_curves(axes[0, 1], result["curves_weak_inputs"], "At initialisation: inputs N(0, 0.1²)")
    plot_curves(
        axes[1, 0],
        result["curves_trained"],
        f"After {cfg['train_steps']} Adam steps on the adding problem (T = {cfg['steps']})",
    )
    ax = axes[1, 1]
    for label, h in result["training"].items():
        color, ls = STYLE[label]
        ax.plot(
            h["step"], h["loss"], color=color, ls=ls, label=f"{label}: test {h['test_mse']:.3g}"
        )
    ax.axhline(result["adding_baseline_mse"], color="k", ls=":", label="baseline (predict 1)")
    ax.set(
        title=f"Adding problem, T = {cfg['steps']}: training loss",
        xlabel="training step",
        ylabel="MSE (log scale)",
        yscale="log",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="final test MSE")
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()
    key = seed_everything(args.seed)
    config = {"hidden": 64, "inputs": 64, "steps": 150, "batch": 32}
    config |= {"train_batch": 32, "train_steps": 3000, "learning_rate": 1e-3, "log_every": 20}
    config |= {"all_cells": True}
    if args.quick:  # T stays >= 100 (the anchors are read at k = 100)
        config |= {"steps": 110, "batch": 8, "train_batch": 16, "train_steps": 40, "log_every": 5}
        config |= {"all_cells": False}
    config |= {"loss": "(last output . u - target)^2, batch mean of per-example norms"}
    k_init, k_weak, k_train, k_eval = jax.random.split(key, 4)
    total = 2 * len(cells_for(config)) + len(TRAINED) * (config["train_steps"] + 1)
    bar = progress(desc=NAME, unit="step", total=total)
    curves = init_curves(k_init, config, 1.0, bar)
    weak = init_curves(k_weak, config, 0.1, bar)
    training, trained = {}, {}
    for label in TRAINED:
        params, training[label] = train_adding(k_train, label, config, bar)
        trained[label] = trained_curve(k_eval, label, params, config)
        bar.update()
    bar.close()
    data = {
        "curves": curves,
        "curves_weak_inputs": weak,
        "curves_trained": trained,
        "training": training,
        "adding_baseline_mse": tasks.ADDING_BASELINE_MSE,
        "decay_per_step": {label: decay_per_step(c) for label, c in curves.items()},
        "anchors": anchors_of(curves),
    }
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    c, k = result["curves"], ANCHOR_K
    rate = result["decay_per_step"]
    tr = result["training"]
    finding = (
        f"At initialisation the gradient k = {k} steps back is {fmt(c['rnn']['relative'][k])} "
        f"of its k = 0 value for the tanh RNN, {fmt(c['lstm']['relative'][k])} for the LSTM "
        f"(forget bias 1), {fmt(c['lstm_forget_bias_0']['relative'][k])} with forget bias 0, "
        f"{fmt(c['gru']['relative'][k])} for the GRU (per-step factors "
        f"{fmt(rate['rnn'])}, {fmt(rate['lstm'])}, {fmt(rate['lstm_forget_bias_0'])}, "
        f"{fmt(rate['gru'])})"
        + "".join(
            f"; {fmt(c[n]['relative'][k])} for the {n} (per-step {fmt(rate[n])})"
            for n in ("lstm_ln", "ctrnn")
            if n in c and n in rate
        )
        + "; after training on the adding problem the test MSE is "
        + ", ".join(f"{fmt(h['test_mse'])} ({label})" for label, h in tr.items())
        + f" (baseline {fmt(result['adding_baseline_mse'])})."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

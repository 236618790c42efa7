"""State tracking: parity and addition mod 3, trained on short sequences, tested on long ones.

The claim (Beck et al. 2024, "xLSTM", section 4.1 and Table 1; the theory
in Merrill et al. 2024 and Grazzi et al. 2024): a recurrence whose step is
nonlinear in its carry (sLSTM, LSTM) can track a state such as the parity
of a bit stream at every length, while one whose carry enters each step
linearly with positive coefficients set by the input alone (mLSTM:
C_t = f_t C_{t-1} + i_t v_t k_t^T; minGRU: h_t = (1 - z_t) h_{t-1} +
z_t h~_t) cannot: flipping a state needs a negative coefficient.

Each cell (hidden 32, a linear readout to m classes) is trained with Adam
and global-norm clipping on `lstmjax.tasks.modular_addition` (one-hot
tokens, the running sum modulo m as the target at every step, so every
prefix is an example) with sequences of `train_length` steps; several
seeds train at once. It is then tested on fresh sequences `test_length`
long: the accuracy at step t is that of the prediction after t tokens, so
t > train_length are lengths never trained on. Cells: sLSTM, mLSTM
(4 heads each), LSTM, GRU, minGRU, tanh RNN. Chance is 1/m.

    python experiments/state_tracking.py [--quick] [--out DIR]
"""

from __future__ import annotations

import textwrap
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _common import (
    Report,
    anchor,
    fmt,
    parameter_count,
    parse_args,
    progress,
    publish,
    seed_everything,
)
from _population import CELLS, COLORS, LINES, METHOD, NAMES, train_seeds

import lstmjax as lj
from lstmjax import losses, tasks

NAME = "state_tracking"

NONLINEAR = ("slstm", "lstm")  # the claim: these solve it and extrapolate
LINEAR = ("mlstm", "min_gru")  # the claim: these cannot
QUICK_CELLS = ("slstm", "mlstm", "lstm", "min_gru")
FACTOR = 4  # the anchors are read at FACTOR x the training length
SOLVED = 0.9  # anchor: the nonlinear cells' accuracy at FACTOR x the training length
CHANCE_MARGIN = 0.1  # anchor: the linear cells' accuracy stays within this of chance
TASK_NAMES = {2: "Parity", 3: "Addition mod 3", 5: "Addition mod 5"}
PANEL_TITLES = {
    2: "Parity of a bit stream",
    3: "Running sum mod 3 of a stream of tokens 0, 1, 2",
    5: "Running sum mod 5 of a stream of tokens 0..4",
}


class Model(NamedTuple):
    cell: Any  # the cell's parameters
    readout: lj.DenseParams  # [H, m]


def train_cell(key, label: str, modulus: int, config: dict, bar) -> dict:
    """Train `label` on addition mod `modulus` (all seeds at once); test at every step."""
    cell, readout = CELLS[label](config["hidden"]), lj.dense(modulus)

    def apply_fn(p: Model, xs):
        ys, _ = lj.unroll(cell, p.cell, jax.nn.one_hot(xs, modulus), method=METHOD)
        return readout.apply(p.readout, ys)

    def init_params(k) -> Model:
        kc, kr = jax.random.split(k)
        return Model(cell.init(kc, modulus), readout.init(kr, cell.output_size))

    def make_batch(k):
        return tasks.modular_addition(k, config["batch"], config["train_length"], modulus=modulus)

    params, history = train_seeds(
        key, init_params, apply_fn, losses.cross_entropy, make_batch, config, bar
    )
    xs, ys = tasks.modular_addition(
        jax.random.fold_in(key, 1), config["test_batch"], config["test_length"], modulus=modulus
    )

    @jax.jit
    def accuracy_by_step(p):  # [L]: the fraction right after t + 1 tokens
        return jnp.mean(jnp.argmax(apply_fn(p, xs), axis=-1) == ys, axis=0)

    per_seed = np.asarray(jax.vmap(accuracy_by_step)(params), np.float64)  # [S, L]
    count = parameter_count(jax.eval_shape(init_params, jax.random.PRNGKey(0)))
    return {**history, "accuracy_seeds": per_seed, "parameters": count}


def summary(run: dict, config: dict) -> dict:
    """The accuracy at 1, 2, 4 and 8 x the training length: per seed and the seeds' median."""
    T, L = config["train_length"], config["test_length"]
    acc = np.asarray(run["accuracy_seeds"])
    out = {}
    for factor in (1, 2, 4, 8):
        if factor * T <= L:
            at = acc[:, factor * T - 1]
            out[str(factor)] = {"median": float(np.median(at)), "seeds": at}
    return out


def anchors_of(results: dict, config: dict) -> list[dict]:
    """The paper's claims at FACTOR x the training length (median of the seeds)."""
    T, rows = config["train_length"], []
    for m, runs in results.items():
        chance = 1 / int(m)
        where = f"{TASK_NAMES[int(m)].lower()}, length {FACTOR * T} (trained on {T})"
        for label in NONLINEAR:
            if label in runs:
                acc = runs[label]["summary"][str(FACTOR)]["median"]
                rows.append(
                    anchor(
                        f"{NAMES[label]}: {where}, accuracy (median of seeds)",
                        f">= {SOLVED} (solves it and extrapolates)",
                        acc,
                        acc >= SOLVED,
                    )
                )
        for label in LINEAR:
            if label in runs:
                acc = runs[label]["summary"][str(FACTOR)]["median"]
                bound = chance + CHANCE_MARGIN
                rows.append(
                    anchor(
                        f"{NAMES[label]}: {where}, accuracy (median of seeds)",
                        f"<= {bound:.2f} (chance {chance:.2f} + {CHANCE_MARGIN}: cannot)",
                        acc,
                        acc <= bound,
                    )
                )
    return rows


def headline(result: dict) -> str:
    """The figure's take-home message, from the run's numbers."""
    T = result["config"]["train_length"]
    passed = all(row["pass"] for row in result["anchors"])
    lead = (
        "Cells whose step is nonlinear in the carry (sLSTM, LSTM) track the state far beyond "
        "the training length; the linear-in-carry mLSTM and minGRU stay near chance."
        if passed
        else "The paper's split does not reproduce in full here: see the failed anchors."
    )
    lines = [lead]
    for m, runs in result["results"].items():
        accs = ", ".join(
            f"{NAMES[label]} {fmt(r['summary'][str(FACTOR)]['median'])}"
            for label, r in runs.items()
        )
        lines.append(
            f"{TASK_NAMES[int(m)]}, accuracy after {FACTOR * T} tokens (trained on {T}; median "
            f"of {result['config']['seeds']} seeds): {accs} (chance {fmt(1 / int(m))})."
        )
    return "\n".join(lines)


def plot(result: dict):
    cfg, res = result["config"], result["results"]
    T, L = cfg["train_length"], cfg["test_length"]
    width = max(7 * len(res), 12)
    fig, axes = plt.subplots(1, len(res), figsize=(width, 6), layout="constrained", squeeze=False)
    t = np.arange(1, L + 1)
    for ax, (m, runs) in zip(axes[0], res.items(), strict=True):
        ax.axvspan(0.5, T + 0.5, color="gray", alpha=0.12, lw=0)
        ax.text(T / 2, 0.02, "trained\nlengths", ha="center", va="bottom", fontsize=8)
        for label, r in runs.items():
            acc = np.asarray(r["accuracy_seeds"])
            ls, lw = LINES[label]
            counts = " / ".join(f"{res[k][label]['parameters']:,}" for k in res)
            ax.fill_between(t, acc.min(0), acc.max(0), color=COLORS[label], alpha=0.15, lw=0)
            ax.plot(t, np.median(acc, 0), color=COLORS[label], ls=ls, lw=lw,
                    label=f"{NAMES[label]} ({counts} params)")  # fmt: skip
        ax.axhline(1 / int(m), color="k", ls=":", lw=1, label="chance, 1/m")
        ax.axvline(FACTOR * T, color="gray", ls="--", lw=0.9, label=f"{FACTOR}x: anchors read")
        ax.set(
            title=PANEL_TITLES[int(m)],
            xlabel="sequence length t (tokens read before the prediction)",
            ylabel="test accuracy of the prediction at t",
            ylim=(0, 1.03),
            xlim=(0.5, L + 0.5),
        )
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    title = (
        f"H = {cfg['hidden']} for every cell (parameters: "
        + " / ".join(TASK_NAMES[int(m)].lower() for m in res)
        + f"); lines: median of {cfg['seeds']} seeds; bands: range"
    )
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=9, title=title,
               title_fontsize=9)  # fmt: skip
    lines = headline(result).split("\n")
    fig.suptitle("\n".join(textwrap.fill(line, int(13 * width)) for line in lines),
                 fontsize=11, weight="bold")  # fmt: skip
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    key = seed_everything(args.seed)
    config = {
        "hidden": 32,
        "train_length": 20,
        "test_length": 160,
        "batch": 64,
        "test_batch": 2000,
        "steps": 1000,
        "log_every": 20,
        "learning_rate": 1e-2,
        "clip_norm": 1.0,
        "seeds": 5,
        "moduli": [2, 3],
        "cells": list(CELLS),
        "method": "scan",
        "xlstm_heads": 4,
    }
    if args.quick:
        config |= {"steps": 200, "seeds": 2, "moduli": [2], "test_batch": 500, "test_length": 80}
        config |= {"cells": list(QUICK_CELLS)}
    total = config["steps"] * len(config["moduli"]) * len(config["cells"])
    results: dict[str, dict] = {}
    with progress(desc=f"{NAME}: training", unit="update", total=total) as bar:
        for m in config["moduli"]:
            results[str(m)] = {}
            for label in config["cells"]:
                bar.set_postfix_str(f"mod {m} {label}")
                run = train_cell(jax.random.fold_in(key, m), label, m, config, bar)
                run["summary"] = summary(run, config)
                results[str(m)][label] = run
    data = {"results": results, "anchors": anchors_of(results, config)}
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def at_factor(factor: str, s: dict) -> str:
    """ "1 (4x)", or with the seeds' range where it shows in three digits: "0.5 (4x, 0.48-0.52)"."""
    lo, hi = fmt(min(s["seeds"])), fmt(max(s["seeds"]))
    return f"{fmt(s['median'])} ({factor}x" + (f", seeds {lo}-{hi})" if lo != hi else ")")


def report(result: dict) -> Report:
    cfg, parts = result["config"], []
    for m, runs in result["results"].items():
        accs = "; ".join(
            f"{NAMES[label]} " + ", ".join(at_factor(f, s) for f, s in r["summary"].items())
            for label, r in runs.items()
        )
        parts.append(f"{TASK_NAMES[int(m)]} (chance {fmt(1 / int(m))}): {accs}")
    finding = (
        f"Test accuracy (median of {cfg['seeds']} seeds, and their range) after 1, 2, 4 and 8 x "
        f"the training length of {cfg['train_length']} tokens. " + ". ".join(parts) + "."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

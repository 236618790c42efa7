"""Associative recall: the mLSTM's matrix memory against scalar-memory cells, equal parameters.

The claim (Beck et al. 2024, "xLSTM", section 4.1, multi-query associative
recall): the mLSTM stores key-value pairs in a d x d matrix per head,
C_t = f_t C_{t-1} + i_t v_t k_t^T, and reads one back with a query,
C_t q_t, so it recalls many pairs where cells whose memory is a vector of
H scalars (sLSTM, LSTM, GRU, minGRU, tanh RNN) run out of room.

Task: `lstmjax.tasks.associative_recall` (Arora et al. 2023): N key-value
pairs, then the N keys again in random order, the target at each query
being its value (32 key and 32 value tokens; loss and accuracy on the
query steps only). Each step's input is the one-hot token beside the
one-hot token before it, a stand-in for the short causal convolution that
the xLSTM block puts in front of its mLSTM's queries and keys: a step sees
a key and its value together (every cell gets the same input). Each cell has a linear readout;
the hidden sizes are chosen so that every model has the LSTM's parameter
count to within a few percent. Adam with global-norm clipping, several
seeds at once; the accuracy is measured on a fresh test batch. Chance:
1/32 for a blind guess, about 1/N for a guess among the sequence's values.

    python experiments/associative_recall.py [--quick] [--out DIR]
"""

from __future__ import annotations

import textwrap
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _common import (
    Report,
    anchor,
    fmt,
    matched_size,
    parameter_count,
    parse_args,
    progress,
    publish,
    seed_everything,
)
from _population import CELLS, COLORS, LINES, METHOD, NAMES, train_seeds

import lstmjax as lj
from lstmjax import losses, tasks

NAME = "associative_recall"

ORDER = ("mlstm", "slstm", "lstm", "gru", "min_gru", "rnn")  # mLSTM first: the claim's cell
SCALAR = ("slstm", "lstm", "gru", "min_gru", "rnn")  # a memory of H scalars
QUICK_CELLS = ("mlstm", "lstm")
HEADS = {"slstm": 4, "mlstm": 4}  # their hidden sizes must be multiples of the heads
RECALLS = 0.9  # anchor: the mLSTM's recall accuracy
FALLS_SHORT = 0.5  # anchor: the scalar-memory cells' recall accuracy at the largest N


class Model(NamedTuple):
    cell: Any  # the cell's parameters
    readout: lj.DenseParams  # [H, vocab]


def vocab_size(config: dict) -> int:
    return config["num_keys"] + config["num_values"]


def features(xs, vocab: int):
    """One-hot tokens beside the one-hot previous token (zeros at t = 0): `[B, T, 2 vocab]`."""
    now = jax.nn.one_hot(xs, vocab)
    before = jnp.pad(now, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    return jnp.concatenate([now, before], axis=-1)


def model(label: str, hidden: int, vocab: int):
    """`(init_params, apply_fn)` of `label` with `hidden` units and a linear readout."""
    cell, readout = CELLS[label](hidden), lj.dense(vocab)

    def init_params(key) -> Model:
        kc, kr = jax.random.split(key)
        return Model(cell.init(kc, 2 * vocab), readout.init(kr, cell.output_size))

    def apply_fn(p: Model, xs):
        ys, _ = lj.unroll(cell, p.cell, features(xs, vocab), method=METHOD)
        return readout.apply(p.readout, ys)

    return init_params, apply_fn


def count_for(label: str, hidden: int, vocab: int) -> int:
    """Parameters of `label`'s model with `hidden` units (shapes only, no arrays)."""
    init_params, _ = model(label, hidden, vocab)
    return parameter_count(jax.eval_shape(init_params, jax.random.PRNGKey(0)))


def sizes(config: dict) -> dict[str, dict[str, int]]:
    """Hidden size and parameter count of each cell, matched to the LSTM's count."""
    vocab, target = vocab_size(config), count_for("lstm", config["lstm_hidden"], vocab_size(config))
    out = {}
    for label in config["cells"]:
        hidden = (
            config["lstm_hidden"]
            if label == "lstm"
            else matched_size(partial(count_for, label, vocab=vocab), target, HEADS.get(label, 1))
        )
        out[label] = {"hidden": hidden, "parameters": count_for(label, hidden, vocab)}
    return out


def recall_loss(logits, ys):
    return losses.cross_entropy(logits, ys, ys >= 0)


def train_cell(key, label: str, hidden: int, pairs: int, config: dict, bar) -> dict:
    """Train `label` on N = `pairs` (all seeds at once); its recall accuracy per seed."""
    vocab = vocab_size(config)
    init_params, apply_fn = model(label, hidden, vocab)

    def make_batch(k, batch=config["batch"]):
        return tasks.associative_recall(
            k, batch, pairs, num_keys=config["num_keys"], num_values=config["num_values"]
        )

    params, history = train_seeds(key, init_params, apply_fn, recall_loss, make_batch, config, bar)
    xs, ys = make_batch(jax.random.fold_in(key, 1), config["test_batch"])

    @jax.jit
    def accuracy(p):
        return losses.accuracy(apply_fn(p, xs), ys, ys >= 0)

    per_seed = np.asarray(jax.vmap(accuracy)(params), np.float64)
    return {**history, "accuracy_seeds": per_seed, "accuracy": float(np.median(per_seed))}


def anchors_of(results: dict) -> list[dict]:
    """The claim at every N (the mLSTM) and at the largest N (the scalar-memory cells)."""
    rows = []
    for n, runs in results.items():
        if "mlstm" in runs:
            acc = runs["mlstm"]["accuracy"]
            rows.append(
                anchor(
                    f"mLSTM: recall accuracy, N = {n} pairs (median of seeds)",
                    f">= {RECALLS} (its matrix memory holds the pairs)",
                    acc,
                    acc >= RECALLS,
                )
            )
    largest = max(results, key=int)
    for label in SCALAR:
        if label in results[largest]:
            acc = results[largest][label]["accuracy"]
            rows.append(
                anchor(
                    f"{NAMES[label]}: recall accuracy, N = {largest} pairs (median of seeds)",
                    f"<= {FALLS_SHORT} (a memory of H scalars runs out of room)",
                    acc,
                    acc <= FALLS_SHORT,
                )
            )
    return rows


def headline(result: dict) -> str:
    res, cfg = result["results"], result["config"]
    largest = max(res, key=int)
    at = res[largest]
    best_scalar = max((n for n in at if n != "mlstm"), key=lambda n: at[n]["accuracy"])
    lead = (
        "The mLSTM's matrix memory recalls the pairs; the scalar-memory cells, at the same "
        "parameter count, do not."
        if all(row["pass"] for row in result["anchors"])
        else "The paper's contrast does not reproduce in full here: see the failed anchors."
    )
    lines = [
        lead,
        f"N = {largest} pairs, recall accuracy (median of {cfg['seeds']} seeds): "
        + ", ".join(f"{NAMES[n]} {fmt(r['accuracy'])}" for n, r in at.items())
        + f"; the best scalar memory, the {NAMES[best_scalar]}'s, is "
        f"{fmt(at[best_scalar]['accuracy'] * int(largest))}x a guess among the values seen "
        f"(about 1/{largest} = {fmt(1 / int(largest))}).",
    ]
    return "\n".join(textwrap.fill(line, 150) for line in lines)


def plot(result: dict):
    res, cfg, sz = result["results"], result["config"], result["sizes"]
    pairs = [int(n) for n in res]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.8), layout="constrained")
    for label in next(iter(res.values())):
        acc = np.asarray([res[str(n)][label]["accuracy_seeds"] for n in pairs])  # [N's, S]
        s = sz[label]
        name = f"{NAMES[label]} (H = {s['hidden']}, {s['parameters']:,} params)"
        ax.fill_between(pairs, acc.min(1), acc.max(1), color=COLORS[label], alpha=0.15, lw=0)
        ls, lw = LINES[label]
        ax.plot(pairs, np.median(acc, 1), marker="o", ls=ls, lw=lw, color=COLORS[label], label=name)
    dense = np.geomspace(min(pairs) / 1.2, max(pairs) * 1.2, 100)  # a line even for one N
    ax.plot(dense, 1 / dense, "k--", lw=1, label="guess among the values seen: 1/N")
    ax.axhline(1 / cfg["num_values"], color="k", ls=":", lw=1, label="blind guess: 1/32")
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set(
        title="Recall accuracy against the number of key-value pairs (equal parameter counts)",
        xlabel="N, key-value pairs per sequence (then N queries)",
        ylabel="test accuracy on the queries",
        ylim=(0, 1.03),
    )
    ax.set_xticks(pairs, [str(n) for n in pairs])
    ax.grid(alpha=0.3)
    title = f"median of {cfg['seeds']} seeds (band: range)"
    ax.legend(fontsize=8, title=title, title_fontsize=8, loc="center right")
    largest = str(max(pairs))
    for label, r in res[largest].items():
        loss = np.asarray(r["loss_seeds"])
        ax2.fill_between(r["step"], loss.min(0), loss.max(0), color=COLORS[label], alpha=0.15,
                         lw=0)  # fmt: skip
        ls, lw = LINES[label]
        ax2.plot(r["step"], np.median(loss, 0), color=COLORS[label], ls=ls, lw=lw,
                 label=NAMES[label])  # fmt: skip
    ax2.axhline(np.log(cfg["num_values"]), color="k", ls=":", lw=1, label="blind guess: ln 32")
    ax2.axhline(
        np.log(int(largest)), color="k", ls="--", lw=1, label=f"guess among N: ln {largest}"
    )
    ax2.set(
        title=f"Training loss, N = {largest} pairs",
        xlabel="training step",
        ylabel=f"cross-entropy on the queries (nats), mean of each {cfg['log_every']} steps",
        yscale="log",
    )
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8)
    fig.suptitle(headline(result), fontsize=11, weight="bold")
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    key = seed_everything(args.seed)
    config = {
        "num_keys": 32,
        "num_values": 32,
        "pairs": [4, 8, 16],
        "lstm_hidden": 32,
        "batch": 64,
        "test_batch": 1000,
        "steps": 800,
        "log_every": 25,
        "learning_rate": 3e-3,
        "clip_norm": 1.0,
        "seeds": 3,
        "cells": list(ORDER),
        "method": "scan",
        "input": "one-hot token and one-hot previous token",
    }
    if args.quick:
        config |= {"pairs": [4], "steps": 300, "seeds": 2, "test_batch": 200}
        config |= {"cells": list(QUICK_CELLS)}
    sz = sizes(config)
    total = config["steps"] * len(config["pairs"]) * len(config["cells"])
    results: dict[str, dict] = {}
    with progress(desc=f"{NAME}: training", unit="update", total=total) as bar:
        for n in config["pairs"]:
            results[str(n)] = {}
            for label in config["cells"]:
                bar.set_postfix_str(f"N={n} {label}")
                k = jax.random.fold_in(key, n)
                results[str(n)][label] = train_cell(k, label, sz[label]["hidden"], n, config, bar)
    data = {"sizes": sz, "results": results, "anchors": anchors_of(results)}
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    sz, parts = result["sizes"], []
    for n, runs in result["results"].items():
        parts.append(
            f"N = {n}: " + ", ".join(f"{NAMES[k]} {fmt(r['accuracy'])}" for k, r in runs.items())
        )
    finding = (
        f"Recall accuracy on the queries (median of {result['config']['seeds']} seeds), models "
        "of equal parameter count ("
        + ", ".join(f"{NAMES[k]} H = {s['hidden']}: {s['parameters']}" for k, s in sz.items())
        + "): "
        + "; ".join(parts)
        + "."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

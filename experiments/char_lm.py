"""Character-level language models (RNN, LSTM, GRU, minGRU, minLSTM) trained with truncated BPTT.

The corpus is the Python standard library's own source
(`lstmjax.tasks.char_corpus`), so nothing is downloaded. Each model is an
embedding, one recurrent layer and a linear readout
(`lstmjax.lm.language_model`); the hidden sizes are chosen so that the
models have the same number of parameters to within a few percent (the min
cells, whose gates see only x_t, get a wider state for the same count).

Training reads the text as `batch` parallel streams (`tasks.stream_rows`)
in chunks of `chunk_len` characters, one Adam update per chunk, driven by
`train.fit` (`lstmjax.tbptt.stream` and `stream_batches`): the
carry is handed from one chunk to the next in the training state, with its
gradient stopped, so the model sees the whole history going forward and
backpropagates through `chunk_len` steps only.

The validation curve is in bits per character on the held-out end of the
corpus, read the same way (carry passed on, no gradient), beside the
unigram baseline (the entropy of the character frequencies). Each trained
model then writes samples at two temperatures, stored in the JSON.

    python experiments/char_lm.py [--quick] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
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

import lstmjax as lj
from lstmjax import generate, losses, tasks, tbptt, train
from lstmjax.lm import LanguageModel, language_model

NAME = "char_lm"

CELLS: dict[str, Callable[[int], lj.Cell]] = {"rnn": lj.rnn, "lstm": lj.lstm, "gru": lj.gru}
CELLS |= {"min_gru": lj.min_gru, "min_lstm": lj.min_lstm}  # Feng et al. 2024
COLORS = {"rnn": "C3", "lstm": "C0", "gru": "C2", "min_gru": "C5", "min_lstm": "C6"}


def count_for(label: str, hidden: int, vocab: int, embed: int) -> int:
    """Parameters of the language model with `hidden` units (shapes only, no arrays)."""
    model = language_model(vocab, embed, CELLS[label](hidden))
    return parameter_count(jax.eval_shape(model.init, jax.random.PRNGKey(0)))


def matched_hidden(label: str, target: int, vocab: int, embed: int) -> int:
    """The hidden size whose model's parameter count is closest to `target`."""
    return matched_size(lambda h: count_for(label, h, vocab, embed), target)


def sizes(config: dict, vocab: int) -> dict[str, dict[str, int]]:
    """Hidden size and parameter count of each cell, matched to the LSTM's count."""
    embed = config["embed"]
    target = count_for("lstm", config["lstm_hidden"], vocab, embed)
    out = {}
    for label in CELLS:
        h = (
            config["lstm_hidden"]
            if label == "lstm"
            else matched_hidden(label, target, vocab, embed)
        )
        out[label] = {"hidden": h, "parameters": count_for(label, h, vocab, embed)}
    return out


def make_validate(model: LanguageModel):
    """Jitted `(params, chunks [K, B, L + 1]) -> mean cross-entropy (nats/char)`.

    The chunks are consecutive (`tasks.stream_chunks`); the carry goes from
    one to the next, as in training, so each character is scored with all of
    its row's history.
    """

    @jax.jit
    def validate(params, chunks):
        def body(carry, chunk):
            logits, carry = model.apply(params, chunk[:, :-1], carry)
            return carry, losses.cross_entropy(logits, chunk[:, 1:])

        carry = model.initial_carry(chunks.shape[1])
        _, ce = jax.lax.scan(body, carry, chunks)
        return jnp.mean(ce)

    return validate


def stream(tokens, batch: int, length: int) -> tuple[jax.Array, jax.Array]:
    """Inputs and next-character targets `[B, K * L]` of `batch` parallel rows."""
    rows = tasks.stream_rows(tokens, batch)
    usable = (rows.shape[1] - 1) // length * length
    return rows[:, :usable], rows[:, 1 : usable + 1]


def train_one(key, label: str, hidden: int, data: tasks.TextData, config: dict, bar) -> dict:
    """Train one model with truncated BPTT in `train.fit`; returns its curves, samples, final bpc.

    Update n reads chunk n of the stream (`tbptt.stream_batches`, pass after
    pass, every row reset to a fresh carry at the start of each pass); the
    carry lives in the training state (`tbptt.stream`).
    """
    model = language_model(data.vocab.size, config["embed"], CELLS[label](hidden))
    k_init, k_state, k_sample = jax.random.split(key, 3)
    optimizer = optax.chain(
        optax.clip_by_global_norm(config["clip_norm"]), optax.adam(config["learning_rate"])
    )
    batch = config["batch"]
    step = tbptt.stream(
        train.make_train_step(
            lambda p, xs, c: model.apply(p, xs, c), losses.cross_entropy, optimizer
        ),
        model.initial_carry(batch),
        carry_batch_axis=1,  # the stack's carry is [layers, B, H]
    )
    state = train.init_state(
        model.init(k_init), optimizer, key=k_state, carry=model.initial_carry(batch)
    )
    validate = make_validate(model)
    valid_chunks = tasks.stream_chunks(data.valid, config["valid_batch"], config["chunk_len"])
    xs, ys = stream(data.train, batch, config["chunk_len"])
    # A pass reads whole windows of `chunks_per_call` chunks (the tail is left out), and the
    # training bpc is the mean over the last window before each evaluation.
    window = config["chunks_per_call"]
    chunks = xs.shape[1] // (config["chunk_len"] * window) * window
    batches = tbptt.stream_batches(xs, ys, config["chunk_len"], num_chunks=chunks)

    def counted(n):
        bar.update(1)
        return batches(n)

    state, history = train.fit(
        step,
        state,
        counted,
        config["updates"],
        eval_fn=lambda params: {"ce": validate(params, valid_chunks)},
        eval_every=window * config["calls_per_eval"],
        logging=train.Logging(quiet=True),
    )
    loss = {r["step"]: r["loss"] for r in history.train}
    curve = {"update": [], "chars": [], "train_bpc": [], "valid_bpc": []}
    for record in history.eval:
        n = record["step"]
        curve["update"].append(n)
        curve["chars"].append(n * config["chunk_len"] * batch)
        # Training bpc: the mean over the window's chunks (a noisy, in-sample estimate).
        recent = [loss[i] for i in range(n - window + 1, n + 1)]
        curve["train_bpc"].append(losses.bits_per_char(float(np.mean(recent))))
        curve["valid_bpc"].append(losses.bits_per_char(record["ce"]))
    samples = {
        str(t): generate.generate_text(
            jax.random.fold_in(k_sample, i),
            model,
            state.params,
            data.vocab,
            config["prompt"],
            config["sample_chars"],
            temperature=t,
        )
        for i, t in enumerate(config["temperatures"])
    }
    return {**curve, "final_valid_bpc": curve["valid_bpc"][-1], "samples": samples}


def anchors_of(runs: dict, baseline: float) -> list[dict]:
    rnn = runs["rnn"]["final_valid_bpc"]
    rows = []
    for label in ("lstm", "gru"):
        bpc = runs[label]["final_valid_bpc"]
        rows.append(
            anchor(
                f"{label}: validation bits/char, below the tanh RNN's",
                f"< rnn's {rnn:.3f}",
                bpc,
                bpc < rnn,
            )
        )
    worst = max(r["final_valid_bpc"] for r in runs.values())
    rows.append(
        anchor(
            "every cell: validation bits/char below the unigram baseline",
            f"< {baseline:.3f}",
            worst,
            worst < baseline,
        )
    )
    return rows


def plot(result: dict):
    runs, sz, cfg = result["runs"], result["sizes"], result["config"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    for label, r in runs.items():
        name = f"{label} (H = {sz[label]['hidden']}, {sz[label]['parameters']:,} params)"
        ax.plot(np.asarray(r["chars"]) / 1e6, r["valid_bpc"], color=COLORS[label], label=name)
        ax.plot(np.asarray(r["chars"]) / 1e6, r["train_bpc"], color=COLORS[label], ls=":", lw=1)
    ax.axhline(result["unigram_bpc"], color="k", ls="--", lw=1, label="unigram baseline")
    ax.set(
        title=f"Bits/char: validation (solid), last training chunks (dotted); "
        f"TBPTT {cfg['chunk_len']} steps",
        xlabel="training characters read (millions)",
        ylabel="bits per character",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    labels = list(runs)
    finals = [runs[k]["final_valid_bpc"] for k in labels]
    bars = bx.bar(labels, finals, color=[COLORS[k] for k in labels])
    bx.bar_label(bars, fmt="%.3f")
    bx.axhline(result["unigram_bpc"], color="k", ls="--", lw=1, label="unigram baseline")
    bx.set(
        title="Final validation bits/char (matched parameter counts)", ylabel="bits per character"
    )
    bx.legend(fontsize=8)
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    key = seed_everything(args.seed)
    config = {
        "max_chars": 2_000_000,
        "valid_fraction": 0.05,
        "embed": 32,
        "lstm_hidden": 128,
        "batch": 32,
        "valid_batch": 50,
        "chunk_len": 64,
        "chunks_per_call": 10,
        "updates": 2500,
        "calls_per_eval": 25,
        "learning_rate": 3e-3,
        "clip_norm": 1.0,
        "prompt": "def ",
        "sample_chars": 300,
        "temperatures": [0.5, 1.0],
        "optimizer": "adam",
    }
    if args.quick:
        config |= {"max_chars": 120_000, "valid_fraction": 0.1, "lstm_hidden": 48, "batch": 16}
        config |= {"valid_batch": 16, "chunk_len": 32, "updates": 200, "calls_per_eval": 5}
        config |= {"sample_chars": 120}
    data = tasks.char_corpus(max_chars=config["max_chars"], valid_fraction=config["valid_fraction"])
    baseline = tasks.unigram_entropy_bits(data.train, data.vocab.size)
    sz = sizes(config, data.vocab.size)
    bar = progress(desc=f"{NAME}: training", unit="update", total=len(CELLS) * config["updates"])
    runs = {}
    for label in CELLS:
        bar.set_postfix_str(label)
        runs[label] = train_one(key, label, sz[label]["hidden"], data, config, bar)
    bar.close()
    data_out = {
        "vocab_size": data.vocab.size,
        "train_chars": len(data.train),
        "valid_chars": len(data.valid),
        "unigram_bpc": baseline,
        "sizes": sz,
        "runs": runs,
        "anchors": anchors_of(runs, baseline),
    }
    return publish(args, NAME, config, data_out, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    runs, sz = result["runs"], result["sizes"]
    per_cell = ", ".join(
        f"{k} {fmt(r['final_valid_bpc'])} (H = {sz[k]['hidden']}, {sz[k]['parameters']} params)"
        for k, r in runs.items()
    )
    finding = (
        f"Validation bits/char after {result['config']['updates']} TBPTT updates: {per_cell}; "
        f"unigram baseline {fmt(result['unigram_bpc'])}."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

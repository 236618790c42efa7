# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. A character-level language model, and sampling
#
# A language model assigns a probability to the next character given the ones before it,
# $p(x_{t+1} \mid x_{\le t}) = \mathrm{softmax}(h_t W + b)$, with $h_t$ from a recurrent stack over
# embedded characters. It trains on the cross-entropy of every next character and is scored in
# **bits per character**, $\text{CE}/\ln 2$. The corpus is the Python standard library's own
# source ([`tasks.char_corpus`](../../api/tasks/#lstmjax.tasks.char_corpus)): no download.
#
# *Quick sizes:* 200,000 characters, a 1-layer LSTM of 128 units, 300 steps on windows of 64;
# `experiments/char_lm.py` compares the tanh RNN, the LSTM and the GRU at matched parameter
# counts with truncated BPTT on a larger slice (its bits/char, in the [report](../../results/REPORT/),
# come from a different corpus slice and model size, so they are not comparable with this page's).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import lstmjax as lj
from lstmjax import generate, lm, losses, tasks, train

data = tasks.char_corpus(max_chars=200_000)
print(f"{data.vocab.size} characters, {len(data.train):,} for training,", end=" ")
print(f"{len(data.valid):,} held out")
unigram = tasks.unigram_entropy_bits(data.train, data.vocab.size)
print(f"baseline (character frequencies alone): {unigram:.2f} bits/char")

# %% [markdown]
# ## The model and its training step
#
# [`lm.language_model`](../../api/lm/#lstmjax.lm.language_model) is embedding, recurrent stack
# and read-out as pure functions; its `apply` takes int tokens `[B, T]` and returns logits
# `[B, T, V]` and the carry. A window of 65 characters gives 64 inputs and, shifted by one,
# their 64 targets, scored by [`losses.cross_entropy`](../../api/losses/#lstmjax.losses.cross_entropy).

# %%
model = lm.language_model(data.vocab.size, 32, lj.lstm(128))
params = model.init(jax.random.key(0))
train_tokens, valid_tokens = jnp.asarray(data.train), jnp.asarray(data.valid)


def apply_fn(p, inputs):
    logits, _ = model.apply(p, inputs)
    return logits


def split(window):  # (inputs, targets): the targets are the inputs shifted by one
    return window[:, :-1], window[:, 1:]


schedule = optax.cosine_decay_schedule(1e-2, 300, alpha=0.1)
optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
step = train.make_train_step(apply_fn, losses.cross_entropy, optimizer)
state = train.init_state(params, optimizer, key=jax.random.key(1))
batches = train.keyed_batches(
    jax.random.key(2), lambda k: split(tasks.random_windows(k, train_tokens, 32, 64))
)
curve = []
for n in range(300):
    state, metrics = step(state, batches(n))
    curve.append(float(losses.bits_per_char(metrics["loss"])))

valid_in, valid_out = split(
    tasks.random_windows(jax.random.key(3), valid_tokens, 256, 64)
)
valid_bits = float(
    losses.bits_per_char(
        losses.cross_entropy(apply_fn(state.params, valid_in), valid_out)
    )
)
print(f"held-out: {valid_bits:.2f} bits/char (unigram baseline {unigram:.2f})")
plt.figure(figsize=(5, 3))
plt.plot(curve, label="training batches")
plt.axhline(unigram, color="k", ls="--", label="unigram baseline")
plt.xlabel("Adam step")
plt.ylabel("bits / char")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Sampling: temperature and top-k
#
# To generate, feed the prompt, then repeatedly draw the next character from
# $\mathrm{softmax}(\ell / \tau)$ and feed it back. The **temperature** $\tau$ sharpens ($\tau < 1$) or
# flattens ($\tau > 1$) the distribution; **top-k** keeps only the $k$ most likely characters.
# [`generate.filter_logits`](../../api/lm/#lstmjax.generate.filter_logits) applies both:

# %%
logits = jnp.log(jnp.array([0.5, 0.25, 0.15, 0.1]))
for temperature, top_k in [(1.0, None), (0.5, None), (2.0, None), (1.0, 2)]:
    probs = jax.nn.softmax(generate.filter_logits(logits, temperature, top_k))
    print(
        f"temperature {temperature}, top_k {top_k}: p = "
        f"{np.round(np.asarray(probs), 3)}"
    )

# %%
for temperature, top_k in [(0.5, None), (1.0, 10)]:
    text = generate.generate_text(
        jax.random.key(4),
        model,
        state.params,
        data.vocab,
        "def ",
        160,
        temperature=temperature,
        top_k=top_k,
    )
    print(f"--- temperature {temperature}, top_k {top_k} ---\n{text}\n")

# %% [markdown]
# After 300 steps the samples have some of Python's surface (indentation, identifiers,
# parentheses) without its sense. A low temperature repeats the likeliest characters (often
# runs of spaces); top-k cuts off the unlikely tail while keeping variety.

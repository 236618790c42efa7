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
# # 5. The LSTM
#
# The long short-term memory cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers
# et al. 2000) carries two vectors: the output $h_t$ and the cell state $c_t$. With
# $z_t = x_t W_x + h_{t-1} W_h + b$ split into four blocks in the order **i, f, g, o**:
#
# $$\begin{aligned}
# i_t &= \sigma(z_{i,t}) && \text{input gate: how much of the candidate to write} \\
# f_t &= \sigma(z_{f,t}) && \text{forget gate: how much of the old state to keep} \\
# g_t &= \tanh(z_{g,t}) && \text{candidate } \tilde C_t \\
# c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
# o_t &= \sigma(z_{o,t}) && \text{output gate} \\
# h_t &= o_t \odot \tanh(c_t)
# \end{aligned}$$
#
# *Quick sizes:* 32 units, adding problem with $T = 30$, 300 steps; the full runs of
# `experiments/long_range_memory.py` reach MSE 3e-4 at $T = 100$.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax

import lstmjax as lj
from lstmjax import losses, tasks, train

B, T, I, H = 3, 12, 5, 8
xs = jax.random.normal(jax.random.key(0), (B, T, I))
cell = lj.lstm(H)
params = cell.init(jax.random.key(1), I)
print("w_x", params.w_x.shape, "w_h", params.w_h.shape, "b", params.b.shape)

# %% [markdown]
# ## The gates step by step
#
# `w_x` is `[I, 4H]`: the four gate blocks side by side. We compute one step by hand from the
# equations above and compare with `cell.step`. The forget block of the bias starts at
# `forget_bias = 1.0` (Jozefowicz et al. 2015), so that $f_t \approx \sigma(1) \approx 0.73$
# at first and the cell keeps its state.

# %%
h0 = jax.random.normal(jax.random.key(2), (B, H))
c0 = jax.random.normal(jax.random.key(3), (B, H))
z = xs[:, 0] @ params.w_x + h0 @ params.w_h + params.b
z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
i, f, g, o = (
    jax.nn.sigmoid(z_i),
    jax.nn.sigmoid(z_f),
    jnp.tanh(z_g),
    jax.nn.sigmoid(z_o),
)
c1 = f * c0 + i * g
h1 = o * jnp.tanh(c1)
carry, y = cell.step(params, lj.LSTMCarry(h0, c0), xs[:, 0])
print("largest |h by hand - cell.step|:", float(jnp.abs(h1 - carry.h).max()))
print("largest |c by hand - cell.step|:", float(jnp.abs(c1 - carry.c).max()))
print("forget-gate bias block:", params.b[H : 2 * H])

# %% [markdown]
# ## Many-to-one: the adding problem
#
# Each step carries a value in $[0, 1]$ and a marker; the target is the sum of the two marked
# values. Predicting the constant 1 scores MSE $1/6$ ([`tasks.ADDING_BASELINE_MSE`](../../api/tasks/#lstmjax.tasks.ADDING_BASELINE_MSE)).
# The model reads the whole sequence and a dense layer reads its last output.

# %%
lstm, head = lj.lstm(32), lj.dense(1)
model_params = (lstm.init(jax.random.key(4), 2), head.init(jax.random.key(5), 32))


def many_to_one(p, xs):
    hs, _ = lj.unroll(lstm, p[0], xs)
    return head.apply(p[1], hs[:, -1])


optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
step = train.make_train_step(many_to_one, losses.mse, optimizer)
state = train.init_state(model_params, optimizer, key=jax.random.key(6))
batches = train.keyed_batches(
    jax.random.key(7), lambda k: tasks.adding_problem(k, 64, 30)
)
curve = []
for n in range(300):
    state, metrics = step(state, batches(n))
    curve.append(float(metrics["loss"]))
test_x, test_y = tasks.adding_problem(jax.random.key(8), 500, 30)
test_mse = float(losses.mse(many_to_one(state.params, test_x), test_y))
print(f"test MSE {test_mse:.4f} against the baseline {tasks.ADDING_BASELINE_MSE:.4f}")
plt.figure(figsize=(5, 3))
plt.semilogy(curve, label="LSTM, training batches")
plt.axhline(tasks.ADDING_BASELINE_MSE, color="k", ls="--", label="predict 1 (baseline)")
plt.xlabel("Adam step")
plt.ylabel("MSE")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Many-to-many, stacked and bidirectional
#
# [`lj.recurrent`](../../api/layers/#lstmjax.recurrent) stacks layers and runs them both ways,
# with PyTorch's layout: `o` is `[B, T, directions * H]` (every step: many-to-many) and each
# leaf of the final carry is `[num_layers * directions, B, H]`, ordered layer 0 forward,
# layer 0 backward, layer 1 forward, ...

# %%
net = lj.recurrent(lj.lstm(H), num_layers=2, bidirectional=True)
net_params = net.init(jax.random.key(9), I)
o, (h_n, c_n) = net.apply(net_params, xs)
print("o", o.shape, "h_n", h_n.shape, "c_n", c_n.shape)
# The last layer's forward direction ends at the last step, its backward one at the first:
print("forward half of o[:, -1] is h_n[2]:", bool(jnp.allclose(o[:, -1, :H], h_n[2])))
print("backward half of o[:, 0] is h_n[3]:", bool(jnp.allclose(o[:, 0, H:], h_n[3])))

# %% [markdown]
# ## Variable lengths
#
# With `lengths=`, a sequence's carry stops changing past its length and its outputs there are
# zero, so padding never leaks into the result: a padded batch gives what each sequence gives
# on its own. [`lj.last_valid`](../../api/feedforward/#lstmjax.last_valid) picks each
# sequence's last valid output, and the losses take the same `lengths`.

# %%
lengths = jnp.array([12, 7, 3])
padded = jnp.where(jnp.arange(T)[None, :, None] < lengths[:, None, None], xs, 99.0)
o_pad, (h_pad, _) = net.apply(net_params, padded, lengths=lengths)
for b in range(B):
    n = int(lengths[b])
    o_alone, (h_alone, _) = net.apply(net_params, xs[b : b + 1, :n])
    same = jnp.allclose(o_pad[b, :n], o_alone[0], atol=1e-6) and jnp.allclose(
        h_pad[:, b], h_alone[:, 0], atol=1e-6
    )
    print(
        f"sequence {b} (length {n}): padded batch equals the sequence alone: "
        f"{bool(same)}; "
        f"outputs past its length all zero: {bool(jnp.all(o_pad[b, n:] == 0))}"
    )
print("last valid outputs:", lj.last_valid(o_pad, lengths).shape)

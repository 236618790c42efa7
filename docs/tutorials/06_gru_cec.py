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
# # 6. The GRU, and why gates fix the gradient
#
# The gated recurrent unit (Cho et al. 2014) merges the LSTM's input and forget gates into one
# update gate $z_t$ and has no separate cell state. In lstmjax's (and PyTorch's) convention, with
# gate order **r, z, n**:
#
# $$\begin{aligned}
# r_t &= \sigma(x_t W_{xr} + h_{t-1} W_{hr} + b_r), \qquad z_t = \sigma(x_t W_{xz} + h_{t-1} W_{hz} + b_z) \\
# n_t &= \tanh\left(x_t W_{xn} + b_n + r_t \odot (h_{t-1} W_{hn} + b_{hn})\right) \\
# h_t &= z_t \odot h_{t-1} + (1 - z_t) \odot n_t
# \end{aligned}$$
#
# $z_t$ is the share of the old state that is **kept**. Olah's blog and the lecture notes write
# $h_t = (1 - z_t) h_{t-1} + z_t n_t$: their $z$ is our $1 - z$.
#
# *Quick sizes:* 32 units, 100 steps for the Jacobians, the adding problem at $T = 40$ for 250
# steps; `experiments/long_range_memory.py` and `experiments/vanishing_gradients.py` are the
# full versions.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import lstmjax as lj
from lstmjax import diagnostics, losses, tasks, train

B, I, H = 4, 6, 32
x = jax.random.normal(jax.random.key(0), (B, I))
h = jax.random.normal(jax.random.key(1), (B, H))
gru = lj.gru(H)
p = gru.init(jax.random.key(2), I)
p = p._replace(
    b=jax.random.normal(jax.random.key(3), p.b.shape), b_hn=jnp.full((H,), 0.3)
)

# One step by hand, from the equations above.
ax, ah = x @ p.w_x + p.b, h @ p.w_h
r = jax.nn.sigmoid(ax[:, :H] + ah[:, :H])
z = jax.nn.sigmoid(ax[:, H : 2 * H] + ah[:, H : 2 * H])
n = jnp.tanh(ax[:, 2 * H :] + r * (ah[:, 2 * H :] + p.b_hn))
h_new = z * h + (1 - z) * n
print(
    "largest |by hand - gru.step|:", float(jnp.abs(h_new - gru.step(p, h, x)[0]).max())
)

# %% [markdown]
# ## The constant error carousel
#
# Hochreiter and Schmidhuber's argument: an error signal travelling back through $k$ steps of a
# plain RNN is multiplied by $k$ Jacobians $\mathrm{diag}(1 - h_t^2) W_h^\top$, and shrinks or grows
# geometrically ([tutorial 3](../03_rnn_bptt/)). The LSTM's cell state has a path on which the
# Jacobian is just the forget gate,
#
# $$\frac{\partial c_t}{\partial c_{t-1}}\bigg|_{\text{direct}} = \mathrm{diag}(f_t),$$
#
# with no weight matrix and no squashing: with $f_t = 1$ the error circulates unchanged (the
# "constant error carousel"; the original 1997 LSTM had no forget gate, i.e. $f_t \equiv 1$). The
# GRU's direct path is $\mathrm{diag}(z_t)$ in the same way. The gates *learn* when to hold
# ($f, z \to 1$) and when to overwrite.
#
# We measure $\lVert \partial\, \text{carry}_T / \partial\, \text{carry}_{T-k} \rVert$ with
# [`diagnostics.jacobian_norms`](../../api/diagnostics/#lstmjax.diagnostics.jacobian_norms) at
# initialisation, pushing the keep-gates open through their biases: the LSTM's `forget_bias`
# and the GRU's $z$ block of `b`.

# %%
T = 100
xs = jax.random.normal(jax.random.key(4), (2, T, I))
k = np.arange(T)
curves = {}
rnn = lj.rnn(H)
curves["tanh RNN"] = diagnostics.jacobian_norms(rnn, rnn.init(jax.random.key(5), I), xs)
for bias in (0.0, 1.0, 4.0):
    lstm = lj.lstm(H, forget_bias=bias)
    curves[f"LSTM, forget bias {bias:g}"] = diagnostics.jacobian_norms(
        lstm, lstm.init(jax.random.key(5), I), xs
    )
for bias in (0.0, 4.0):
    pg = gru.init(jax.random.key(5), I)
    pg = pg._replace(b=pg.b.at[H : 2 * H].set(bias))
    curves[f"GRU, z bias {bias:g}"] = diagnostics.jacobian_norms(gru, pg, xs)

plt.figure(figsize=(6, 3.5))
for name, norms in curves.items():
    curve = np.asarray(norms).mean(0)[::-1]
    plt.semilogy(k, curve, label=name)
    print(f"{name:24s} ||d carry_T / d carry_(T-{T - 1})|| = {curve[-1]:.1e}")
plt.xlabel("k (steps back)")
plt.ylabel("Jacobian-product norm")
plt.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# With the keep-gates closed (bias 0) the gated cells lose the gradient as fast as the tanh RNN;
# opened, it survives 100 steps. For the LSTM with forget bias 4 the norm even exceeds 1: the
# carry is $[h; c]$, and the paths through $h$ and the gates add to the carousel's
# $\mathrm{diag}(f_t)$. Training moves the gates away from these starting values, in both
# directions, wherever the task needs it.
#
# ## What it buys: memory over many steps
#
# The adding problem at $T = 40$: the two marked values can be anywhere in the sequence, so the
# model must hold the first for up to 40 steps. Same size, same batches, same optimizer.


# %%
def train_adding(cell, num_steps=250, length=40):
    head = lj.dense(1)
    params = (cell.init(jax.random.key(6), 2), head.init(jax.random.key(7), H))

    def apply_fn(p, xs):
        hs, _ = lj.unroll(cell, p[0], xs)
        return head.apply(p[1], hs[:, -1])

    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    step = train.make_train_step(apply_fn, losses.mse, optimizer)
    state = train.init_state(params, optimizer, key=jax.random.key(8))
    batches = train.keyed_batches(
        jax.random.key(9), lambda key: tasks.adding_problem(key, 64, length)
    )
    for n in range(num_steps):
        state, _ = step(state, batches(n))
    test_x, test_y = tasks.adding_problem(jax.random.key(10), 500, length)
    return float(losses.mse(apply_fn(state.params, test_x), test_y))


for name, cell in [("tanh RNN", lj.rnn(H)), ("GRU", lj.gru(H)), ("LSTM", lj.lstm(H))]:
    mse = train_adding(cell)
    print(f"{name}: test MSE {mse:.4f} (baseline {tasks.ADDING_BASELINE_MSE:.4f})")

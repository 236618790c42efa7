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
# # 3. Recurrent networks and backpropagation through time
#
# An **Elman network** feeds its hidden state back into itself,
# $h_t = \tanh(x_t W_x + h_{t-1} W_h + b)$; a **Jordan network** feeds back its *output*,
# $h_t = \tanh(x_t W_x + y_{t-1} W_y + b)$, $y_t = h_t W_{out} + b_{out}$. Training either by
# gradient descent means differentiating through every step: **backpropagation through time**
# (BPTT). In JAX that is `jax.grad` through `lax.scan`. We check it against a backward pass
# written by hand, then measure how the gradient shrinks or grows with the distance it travels,
# with [`lstmjax.diagnostics`](../../api/diagnostics/).
#
# *Quick sizes:* 16-32 units, 100 steps, no training; `experiments/vanishing_gradients.py` and
# `experiments/exploding_gradients.py` run the full versions (64 units, trained models).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import lstmjax as lj
from lstmjax import diagnostics

jax.config.update("jax_enable_x64", True)
B, T, I, H = 4, 30, 3, 16
xs = jax.random.normal(jax.random.key(0), (B, T, I))

# %% [markdown]
# ## A cell is a step function, unroll is the loop
#
# `lj.rnn(H)` returns a [`Cell`](../../api/cells/#lstmjax.Cell). Stepping it in a Python loop
# and running [`lj.unroll`](../../api/layers/#lstmjax.unroll) (a `lax.scan`) give the same
# outputs.

# %%
cell = lj.rnn(H, dtype=jnp.float64)
params = cell.init(jax.random.key(1), I)
print({name: value.shape for name, value in params._asdict().items()})

carry, loop_outputs = cell.initial_carry(B), []
for t in range(T):
    carry, y = cell.step(params, carry, xs[:, t])
    loop_outputs.append(y)
ys, final = lj.unroll(cell, params, xs)
print("largest |loop - unroll|:", float(jnp.abs(jnp.stack(loop_outputs, 1) - ys).max()))

jordan = lj.jordan(H, 2, dtype=jnp.float64)
jordan_params = jordan.init(jax.random.key(2), I)
ys_jordan, y_last = lj.unroll(jordan, jordan_params, xs)
print(
    "Jordan outputs", ys_jordan.shape, "- its carry is the last output:", y_last.shape
)

# %% [markdown]
# ## BPTT by hand
#
# Take the loss $L = \frac{1}{2}\sum_b (h_{T} u - y)^2$ on the last state. Writing
# $\delta_t = \partial L / \partial h_t$ (all paths through later steps) and
# $a_t = x_t W_x + h_{t-1} W_h + b$:
#
# $$\delta_{a,t} = \delta_t \odot (1 - h_t^2), \qquad \delta_{t-1} = \delta_{a,t} W_h^\top, \qquad
# \frac{\partial L}{\partial W_h} = \sum_t h_{t-1}^\top \delta_{a,t}, \quad
# \frac{\partial L}{\partial W_x} = \sum_t x_t^\top \delta_{a,t}, \quad
# \frac{\partial L}{\partial b} = \sum_t \textstyle\sum_b \delta_{a,t}.$$

# %%
u = jax.random.normal(jax.random.key(3), (H,))
target = jnp.ones(B)


def loss(p):
    hs, _ = lj.unroll(cell, p, xs)
    return 0.5 * jnp.sum((hs[:, -1] @ u - target) ** 2)


def bptt_by_hand(p):
    hs, _ = lj.unroll(cell, p, xs)
    h_prev = jnp.concatenate([jnp.zeros((B, 1, H)), hs[:, :-1]], axis=1)
    delta = (hs[:, -1] @ u - target)[:, None] * u  # dL/dh_T: [B, H]
    g = {k: jnp.zeros_like(v) for k, v in p._asdict().items()}
    for t in reversed(range(T)):
        da = delta * (1.0 - hs[:, t] ** 2)
        g["w_h"] += h_prev[:, t].T @ da
        g["w_x"] += xs[:, t].T @ da
        g["b"] += da.sum(0)
        delta = da @ p.w_h.T
    return type(p)(**g)


auto, hand = jax.grad(loss)(params), bptt_by_hand(params)
for name in auto._fields:
    err = float(jnp.abs(getattr(auto, name) - getattr(hand, name)).max())
    print(f"{name}: largest |jax.grad - by hand| = {err:.1e}")

# %% [markdown]
# ## Vanishing and exploding gradients
#
# $\delta_{t-1} = \delta_t \,\mathrm{diag}(1 - h_t^2)\, W_h^\top$: going back $k$ steps multiplies the
# gradient by $k$ Jacobians. For a **linear** RNN with $W_h = \rho Q$ ($Q$ orthogonal) every
# Jacobian is $\rho Q^\top$, so $\lVert \partial h_T / \partial h_{T-k} \rVert = \rho^k$ exactly: it
# vanishes for $\rho < 1$ and explodes for $\rho > 1$.
# [`diagnostics.jacobian_norms`](../../api/diagnostics/#lstmjax.diagnostics.jacobian_norms)
# measures the product's spectral norm step by step.

# %%
T_long = 100
xs_long = jax.random.normal(jax.random.key(4), (2, T_long, I))
q = jnp.linalg.qr(jax.random.normal(jax.random.key(5), (H, H)))[0]
linear = lj.rnn(H, activation=lambda a: a, dtype=jnp.float64)
base = linear.init(jax.random.key(6), I)
k = np.arange(T_long)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for rho in (0.9, 1.0, 1.1):
    scaled = base._replace(w_h=rho * q)
    norms = diagnostics.jacobian_norms(linear, scaled, xs_long)[0, ::-1]
    worst = float(np.max(np.abs(np.asarray(norms) / rho**k - 1)))
    print(
        f"rho = {rho}: spectral radius "
        f"{float(diagnostics.spectral_radius(rho * q)):.3f}, "
        f"max |norm / rho^k - 1| = {worst:.1e}"
    )
    axes[0].semilogy(k, norms, label=f"linear, rho = {rho}")
axes[0].set_xlabel("k (steps back)")
axes[0].set_ylabel("||d h_T / d h_(T-k)||")
axes[0].legend()

# %% [markdown]
# With a saturating nonlinearity the factor $1 - h_t^2 \le 1$ makes it shrink further. We
# compare a tanh RNN with an LSTM (forget bias 1, the default) and a GRU, at the default
# initialisation: [`diagnostics.carry_grad_norms`](../../api/diagnostics/#lstmjax.diagnostics.carry_grad_norms)
# gives $\lVert \partial L / \partial \text{carry}_t \rVert$ for every step in one backward pass, for a
# loss on the last output. [Tutorial 6](../06_gru_cec/) explains why the gated cells keep it.

# %%
xs_in = jax.random.normal(jax.random.key(7), (8, T_long, 32))
readout = jax.random.normal(jax.random.key(8), (32,)) / jnp.sqrt(32.0)
ratios = {}


def last_output_loss(ys):
    return (ys[:, -1] @ readout - 1.0) ** 2


for name, c in [("tanh RNN", lj.rnn(32)), ("LSTM", lj.lstm(32)), ("GRU", lj.gru(32))]:
    p = c.init(jax.random.key(9), 32)
    result = diagnostics.carry_grad_norms(c, p, xs_in, last_output_loss)
    curve = np.asarray(result.mean)[::-1] / float(result.mean[-1])
    ratios[name] = curve[-1]
    axes[1].semilogy(k, curve, label=name)
axes[1].set_xlabel("k (steps back)")
axes[1].set_ylabel("||dL/d carry_(T-k)|| / k = 0")
axes[1].legend()
plt.tight_layout()
plt.show()
for name, r in ratios.items():
    print(f"{name}: gradient {T_long - 1} steps back / at the last step = {r:.1e}")

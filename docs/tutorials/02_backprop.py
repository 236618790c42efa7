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
# # 2. Feed-forward networks and backpropagation
#
# A multilayer perceptron with one hidden layer of $H$ tanh units and a sigmoid output,
#
# $$a = x W_1 + b_1, \quad h = \tanh(a), \quad z = h W_2 + b_2, \quad p = \sigma(z),$$
#
# trained on the binary cross-entropy $L = -\frac{1}{N}\sum_n [y_n \log p_n + (1-y_n)\log(1-p_n)]$.
# We derive the gradients by hand with the chain rule, check them against `jax.grad`, and train
# the network on XOR, which no perceptron can fit ([tutorial 1](../01_perceptron/)).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import lstmjax as lj

jax.config.update("jax_enable_x64", True)  # float64: hand and autodiff agree to ~1e-15

xor_x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
xor_y = jnp.array([0.0, 1.0, 1.0, 0.0])

# %% [markdown]
# ## The backward pass by hand
#
# With $\sigma$ and the cross-entropy together, $\partial L / \partial z_n = (p_n - y_n)/N$. Then
#
# $$\frac{\partial L}{\partial W_2} = h^\top \delta_z, \quad
# \frac{\partial L}{\partial b_2} = \textstyle\sum_n \delta_{z,n}, \quad
# \delta_a = (\delta_z W_2^\top) \odot (1 - h^2), \quad
# \frac{\partial L}{\partial W_1} = x^\top \delta_a, \quad
# \frac{\partial L}{\partial b_1} = \textstyle\sum_n \delta_{a,n}.$$


# %%
def init(key, hidden=4):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (2, hidden)),
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, 1)) / jnp.sqrt(hidden),
        "b2": jnp.zeros(1),
    }


def forward(p, x):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return h, (h @ p["w2"] + p["b2"])[:, 0]


def loss(p, x, y):
    _, z = forward(p, x)
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z)  # BCE of sigmoid(z), written stably


def grads_by_hand(p, x, y):
    h, z = forward(p, x)
    dz = (jax.nn.sigmoid(z) - y) / x.shape[0]  # [N]
    da = (dz[:, None] @ p["w2"].T) * (1.0 - h**2)  # [N, H]
    return {
        "w1": x.T @ da,
        "b1": da.sum(0),
        "w2": h.T @ dz[:, None],
        "b2": dz.sum(keepdims=True),
    }


params = init(jax.random.key(0))
by_hand = grads_by_hand(params, xor_x, xor_y)
by_jax = jax.grad(loss)(params, xor_x, xor_y)
for name in params:
    err = float(jnp.max(jnp.abs(by_hand[name] - by_jax[name])))
    print(f"{name}: largest |hand - jax.grad| = {err:.1e}")

# %% [markdown]
# A third, independent check: a central finite difference along a random direction $v$,
# $\frac{L(\theta + \epsilon v) - L(\theta - \epsilon v)}{2\epsilon} \approx \nabla L \cdot v$, with error $O(\epsilon^2)$.

# %%
leaves, unravel = ravel_pytree(params)
v = jax.random.normal(jax.random.key(1), leaves.shape)
eps = 1e-5
up = loss(unravel(leaves + eps * v), xor_x, xor_y)
down = loss(unravel(leaves - eps * v), xor_x, xor_y)
fd = (up - down) / (2 * eps)
analytic = jnp.dot(ravel_pytree(by_hand)[0], v)
print(f"finite difference {float(fd):.10f}, hand-derived {float(analytic):.10f}")

# %% [markdown]
# ## Training on XOR
#
# The same network from lstmjax's pieces: [`lj.mlp`](../../api/feedforward/#lstmjax.mlp) with sizes `[2, 4, 1]`,
# trained with Adam. Four hidden units are more than XOR needs (two suffice) but make the
# run robust to the initialisation.

# %%
net = lj.mlp([2, 4, 1], activation=jnp.tanh, dtype=jnp.float64)
mlp_params = net.init(jax.random.key(2), 2)


def mlp_loss(p):
    z = net.apply(p, xor_x)[:, 0]
    return jnp.mean(jnp.logaddexp(0.0, z) - xor_y * z)


opt = optax.adam(0.05)
opt_state = opt.init(mlp_params)


@jax.jit
def step(p, s):
    value, g = jax.value_and_grad(mlp_loss)(p)
    updates, s = opt.update(g, s)
    return optax.apply_updates(p, updates), s, value


history = []
for _ in range(500):
    mlp_params, opt_state, value = step(mlp_params, opt_state)
    history.append(float(value))
probs = jax.nn.sigmoid(net.apply(mlp_params, xor_x)[:, 0])
print("outputs on the four corners:", np.round(np.asarray(probs), 3), "targets:", xor_y)

grid = jnp.stack(
    jnp.meshgrid(jnp.linspace(-0.5, 1.5, 101), jnp.linspace(-0.5, 1.5, 101)), -1
)
surface = jax.nn.sigmoid(net.apply(mlp_params, grid.reshape(-1, 2))).reshape(101, 101)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
axes[0].semilogy(history)
axes[0].set_xlabel("Adam step")
axes[0].set_ylabel("cross-entropy")
im = axes[1].contourf(grid[..., 0], grid[..., 1], surface, levels=20, cmap="RdBu_r")
axes[1].scatter(xor_x[:, 0], xor_x[:, 1], c=xor_y, cmap="RdBu_r", edgecolors="k", s=80)
axes[1].set_title("p(y = 1 | x): two lines, not one")
plt.colorbar(im, ax=axes[1])
plt.tight_layout()
plt.show()

# %% [markdown]
# Backpropagation is the chain rule applied layer by layer from the loss backwards. For a
# recurrent network the layers are time steps with shared weights: that is
# [tutorial 3](../03_rnn_bptt/).

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
# # 1. The perceptron
#
# A perceptron computes a weighted sum of its inputs and passes it through an activation:
# $\hat y = \varphi(w \cdot x + b)$. Rosenblatt's perceptron uses the Heaviside step
# $\varphi(s) = [s \ge 0]$; replacing it by the sigmoid $\sigma(s) = 1 / (1 + e^{-s})$ gives
# logistic regression. This tutorial shows why the step function cannot be trained by gradient
# descent, trains both on separable data, and shows that no single perceptron solves XOR.
#
# *Quick sizes:* 200 points, a few hundred steps; the full experiment is
# `experiments/perceptron_mlp.py` (anchors in the [report](../../results/REPORT/)).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

key = jax.random.key(0)


def heaviside(s):
    return (s >= 0).astype(s.dtype)


# %% [markdown]
# ## The gradient through a step is zero
#
# The step is flat everywhere except at $0$, where it jumps. Its derivative is $0$ almost
# everywhere, so `jax.grad` of any loss through it is exactly zero: gradient descent gets no
# signal. The sigmoid's derivative $\sigma'(s) = \sigma(s)(1 - \sigma(s))$ is positive
# everywhere, largest ($0.25$) at $s = 0$.

# %%
s = jnp.linspace(-6.0, 6.0, 241)
d_step = jax.vmap(jax.grad(heaviside))(s)
d_sigmoid = jax.vmap(jax.grad(jax.nn.sigmoid))(s)
print("largest |d step / ds|:", float(jnp.abs(d_step).max()))
peak = float(s[d_sigmoid.argmax()])
print(f"largest d sigmoid / ds: {float(d_sigmoid.max()):.4f} at s = {peak:.2f}")

fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].plot(s, heaviside(s), label="Heaviside")
axes[0].plot(s, jax.nn.sigmoid(s), label="sigmoid")
axes[0].set_title("activation")
axes[1].plot(s, d_step, label="Heaviside'")
axes[1].plot(s, d_sigmoid, label="sigmoid'")
axes[1].set_title("derivative (jax.grad)")
for ax in axes:
    ax.legend()
    ax.set_xlabel("s")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Two separable clouds
#
# Rosenblatt's rule needs no gradient: for each misclassified point, $w \leftarrow w + (y - \hat y) x$.
# On linearly separable data it stops after finitely many mistakes (the perceptron convergence
# theorem). The sigmoid perceptron is trained by gradient descent on the cross-entropy.

# %%
k1, k2 = jax.random.split(key)
n = 200
labels = (jnp.arange(n) % 2).astype(jnp.float32)
centres = jnp.where(labels[:, None] > 0, jnp.array([1.5, 1.5]), jnp.array([-1.5, -1.5]))
points = centres + 0.7 * jax.random.normal(k1, (n, 2))


def perceptron_rule(x, y, epochs=20):
    w, b = np.zeros(2), 0.0
    for _ in range(epochs):
        mistakes = 0
        for xi, yi in zip(np.asarray(x), np.asarray(y), strict=True):
            error = yi - float(np.dot(w, xi) + b >= 0)
            if error != 0:
                w, b, mistakes = w + error * xi, b + error, mistakes + 1
        if mistakes == 0:
            break
    return jnp.asarray(w), jnp.asarray(b)


def bce(params, x, y):
    w, b = params
    logits = x @ w + b
    # = -log of the sigmoid likelihood
    return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits)


@jax.jit
def gd_step(params, x, y, lr=0.5):
    grads = jax.grad(bce)(params, x, y)
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


w_step, b_step = perceptron_rule(points, labels)
acc_step = jnp.mean(heaviside(points @ w_step + b_step) == labels)

params = (jnp.zeros(2), jnp.zeros(()))
for _ in range(300):
    params = gd_step(params, points, labels)
acc_sigmoid = jnp.mean((points @ params[0] + params[1] >= 0) == labels)
print(f"step perceptron (Rosenblatt's rule): accuracy {float(acc_step):.3f}")
print(f"sigmoid perceptron (gradient descent): accuracy {float(acc_sigmoid):.3f}")


# What the gradient sees when the step replaces the sigmoid: nothing.
def step_loss(p):
    return jnp.mean((heaviside(points @ p[0] + p[1]) - labels) ** 2)


grads_through_step = jax.grad(step_loss)((jnp.array([0.3, -0.2]), jnp.zeros(())))
print("gradient of the squared error through the step:", grads_through_step)

# %% [markdown]
# ## XOR: no line separates it
#
# XOR labels the corners $(0,0), (1,1)$ as $0$ and $(0,1), (1,0)$ as $1$. A perceptron's decision
# boundary is a line, and a line cuts off at most three of the four corners, so the best any
# perceptron can do is $3/4$. The sigmoid perceptron trained by gradient descent settles where
# the gradient vanishes: all four outputs near $0.5$.

# %%
xor_x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
xor_y = jnp.array([0.0, 1.0, 1.0, 0.0])
params = (jnp.array([0.1, -0.1]), jnp.zeros(()))
for _ in range(2000):
    params = gd_step(params, xor_x, xor_y)
probs = jax.nn.sigmoid(xor_x @ params[0] + params[1])
print("sigmoid perceptron on XOR, outputs:", np.round(np.asarray(probs), 3))
print(f"largest distance from 0.5: {float(jnp.abs(probs - 0.5).max()):.2e}")

# %% [markdown]
# One hidden layer fixes this: [tutorial 2](../02_backprop/) trains a small MLP on XOR and
# computes its gradients by hand.

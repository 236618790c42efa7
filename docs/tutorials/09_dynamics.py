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
# # 9. Lyapunov exponents and fixed points
#
# A cell with its input held fixed is a map of its carry, $h_t = F(h_{t-1}, x_t)$. Two
# classical instruments describe such a map, and
# [`lstmjax.dynamics`](../../api/dynamics/) has both for any cell:
#
# * the **Lyapunov exponents** $\lambda_i = \lim_n \frac{1}{n} \log \sigma_i(J_n \cdots J_1)$,
#   $J_t = \partial h_t / \partial h_{t-1}$: the average rate, in nats per step, at which the
#   product of Jacobians stretches ($\lambda > 0$) or shrinks ($\lambda < 0$) directions.
#   Backpropagation multiplies by the same Jacobians, so $\lambda_1$ is the rate at which
#   gradients grow or vanish;
# * the **fixed points** $h^* = F(h^*, x)$ with the eigenvalues of $\partial F / \partial h$
#   there (Sussillo & Barak 2013): stable if every $|\mu| < 1$, unstable if every $|\mu| > 1$,
#   a saddle otherwise.
#
# *Quick sizes:* 64 units, 200 steps, 8 trajectories; `experiments/edge_of_chaos.py` and
# `experiments/lyapunov_gradients.py` run the full versions (up to 2,048 units).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import lstmjax as lj
from lstmjax import diagnostics, dynamics

jax.config.update("jax_enable_x64", True)
N, B, WARM, STEPS = 64, 8, 50, 100  # each trajectory: WARM + STEPS + WARM steps
W = jax.random.normal(jax.random.key(0), (N, N), jnp.float64) / np.sqrt(N)
rho = float(jnp.max(jnp.abs(jnp.linalg.eigvals(W))))
print(f"spectral radius of this W: {rho:.3f}; rescaled to 1")
W = W / rho  # so that the edge of the zero state is exactly g = 1 at this small N
cell = lj.rnn(N, dtype=jnp.float64)
base = cell.init(jax.random.key(1), 1)
h0 = jax.random.normal(jax.random.key(2), (B, N), jnp.float64)
zeros = jnp.zeros((B, 2 * WARM + STEPS, 1), jnp.float64)

# %% [markdown]
# ## The edge of chaos
#
# The autonomous network $h_t = \tanh(g W h_{t-1})$, $W_{ij} \sim \mathcal N(0, 1/N)$, is the
# cell `lj.rnn(N)` with zero input and `w_h` $= g W^\top$ (the cell multiplies $h W_h$). Below
# $g = 1/\rho(W)$ the zero state attracts every trajectory and $\lambda_1 = \log(g\, \rho(W))$;
# the spectral radius $\rho(W) \to 1$ as $N$ grows (circular law), and at $N = 64$ we rescale
# $W$ to $\rho(W) = 1$ so that this edge is $g = 1$. Above it the zero state is unstable and
# large networks are chaotic, $\lambda_1 > 0$ (Sompolinsky, Crisanti & Sommers 1988). A small
# one often settles first on a nonzero fixed point ($\lambda_1 < 0$) or a periodic or
# quasi-periodic orbit ($\lambda_1 = 0$: the direction along the orbit neither grows nor
# shrinks), and becomes chaotic only at larger $g$. `lyapunov_spectrum` drops `warmup`
# steps at each end: at the start so that the state forgets $h_0$, at the end so that the
# backward QR recursion has turned towards the most expanding directions.

# %%
gains = [0.5, 0.8, 0.9, 1.1, 1.3, 1.6, 2.0, 2.5]
lambda_1 = []
for g in gains:
    params = base._replace(w_h=g * W.T)
    spec = dynamics.lyapunov_spectrum(cell, params, zeros, h0, k=1, warmup=WARM)
    lambda_1.append(float(spec.mean[0]))
    print(f"g = {g:.1f}: lambda_1 = {lambda_1[-1]:+.3f} nats/step", end="   ")
    print(f"(log g = {np.log(g):+.3f})")

plt.figure(figsize=(5, 3))
plt.plot(gains, lambda_1, "o-", label=r"$\lambda_1$, lyapunov_spectrum")
g_fine = np.linspace(0.5, 1.0, 20)
plt.plot(g_fine, np.log(g_fine), "k--", label=r"$\log g$ (zero state, $\rho(W) = 1$)")
plt.axhline(0, color="gray", lw=0.8)
plt.axvline(1, color="gray", lw=0.8, ls=":")
plt.xlabel("gain g")
plt.ylabel("nats per step")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The whole spectrum
#
# With `k` exponents the QR recursion follows `k` orthonormal directions at once. In the
# chaotic regime only some directions expand; the sum of the positive exponents is the rate
# at which volumes on the attractor stretch.

# %%
chaotic = base._replace(w_h=2.0 * W.T)
spec = dynamics.lyapunov_spectrum(cell, chaotic, zeros, h0, k=N, warmup=WARM)
exponents = np.asarray(spec.mean)
print(
    f"g = 2.0: {int(np.sum(exponents > 0))} of {N} exponents positive; "
    f"largest {exponents[0]:+.3f}, smallest {exponents[-1]:+.3f}"
)
plt.figure(figsize=(5, 3))
plt.plot(np.arange(1, N + 1), exponents, ".-")
plt.axhline(0, color="gray", lw=0.8)
plt.xlabel("index i")
plt.ylabel(r"$\lambda_i$ (nats per step)")
plt.title("Lyapunov spectrum at g = 2")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Gradient decay is $\lambda_1$
#
# A gradient $k$ steps back from a loss on the last output is the transposed Jacobian product
# applied to one vector, so once that vector has turned towards the most expanding direction
# its log-norm changes by $\lambda_1$ per step (Oseledets).
# [`diagnostics.carry_grad_norms`](../../api/diagnostics/) measures
# $\|\partial L / \partial h_t\|$ at every step in one backward pass; the least-squares slope
# of its log over the steps the spectrum averages should equal $\lambda_1$. Here the network
# is driven by random inputs at $g = 0.8$, where the gradient vanishes.

# %%
g, I = 0.8, 16
driven = lj.rnn(N, dtype=jnp.float64)
params = driven.init(jax.random.key(3), I)._replace(w_h=g * W.T)
xs = jax.random.normal(jax.random.key(4), (B, 2 * WARM + STEPS, I), jnp.float64)
u = jax.random.normal(jax.random.key(5), (N,), jnp.float64) / np.sqrt(N)


def loss_fn(ys):
    return jnp.square(ys[:, -1] @ u)


norms = diagnostics.carry_grad_norms(driven, params, xs, loss_fn)
log_norm = np.log(np.asarray(norms.combined))[:, ::-1].mean(axis=0)  # index: steps back
window = np.arange(WARM, WARM + STEPS)
grad_slope = float(np.polyfit(window, log_norm[window], 1)[0])
lam = float(dynamics.lyapunov_spectrum(driven, params, xs, k=1, warmup=WARM).mean[0])
print(
    f"g = {g}, driven: gradient slope {grad_slope:+.4f}, lambda_1 {lam:+.4f} "
    "nats/step, "
    f"difference {grad_slope - lam:+.4f}"
)

k = np.arange(len(log_norm))
plt.figure(figsize=(5, 3))
plt.plot(k, log_norm - log_norm[0], label=r"$\log\|dL/dh_{T-k}\|$ (batch mean)")
line = log_norm[WARM] - log_norm[0] + lam * (window - WARM)
plt.plot(window, line, "k--", label=r"slope $\lambda_1$")
plt.axvspan(WARM, WARM + STEPS, color="gray", alpha=0.1)
plt.xlabel("k, steps back from the loss")
plt.ylabel("relative to k = 0")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Fixed points and their stability
#
# [`dynamics.map_cell`](../../api/dynamics/) makes a cell of any map. The 1-D map
# $h \mapsto \tanh(2h)$ has three fixed points: $0$, with derivative $2$ (unstable), and
# $\pm h^*$ with $h^* = \tanh(2 h^*) \approx 0.9575$, where the derivative
# $2(1 - h^{*2}) \approx 0.167$ (stable). `fixed_points` minimises the speed
# $q(h) = \frac{1}{2}(F(h) - h)^2$ from many starts, keeps the minima with $q$ below `tol`,
# merges duplicates and reports the eigenvalues of the Jacobian at each.

# %%
tanh2 = dynamics.map_cell(lambda h: jnp.tanh(2.0 * h), 1, name="tanh(2h)")
starts = jnp.linspace(-2.0, 2.0, 21, dtype=jnp.float64)[:, None]
found = dynamics.fixed_points(tanh2, (), jnp.zeros(1, jnp.float64), starts=starts)
h_star = 0.9575
for _ in range(100):  # the reference by plain iteration of the map itself
    h_star = float(np.tanh(2 * h_star))
points, eigenvalues = found.points[:, 0], found.eigenvalues[:, 0]
for point, eig, kind in zip(points, eigenvalues, found.kind, strict=True):
    print(f"h = {point:+.6f}   dF/dh = {eig.real:.4f}   {kind}")
print(f"reference: h* = {h_star:.6f}, dF/dh there = {2 * (1 - h_star**2):.4f}; at 0: 2")

h = np.linspace(-1.5, 1.5, 300)
plt.figure(figsize=(4, 3.5))
plt.plot(h, np.tanh(2 * h), label=r"$\tanh(2h)$")
plt.plot(h, h, "k:", label="h")
for point, kind in zip(found.points[:, 0], found.kind, strict=True):
    plt.plot(point, point, "o" if kind == "stable" else "x", color="C3", ms=8)
plt.xlabel(r"$h_{t-1}$")
plt.ylabel(r"$h_t$")
plt.title("fixed points: o stable, x unstable")
plt.legend()
plt.tight_layout()
plt.show()

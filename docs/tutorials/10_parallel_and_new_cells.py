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
# # 10. Parallel in time, and the cells users ask for
#
# A recurrence $h_t = f(h_{t-1}, x_t)$ looks inherently sequential, but all $T$ states solve
# one system of equations, $h_t - f(h_{t-1}, x_t) = 0$ for every $t$ at once. Newton's method
# on that system (DEER, Lim et al. 2024) linearises every step around the current guess; the
# linearised recurrence $h_t = J_t h_{t-1} + b_t$ is affine, and an affine recurrence is a
# scan of an associative operator, so it runs in $O(\log T)$ depth. Quasi-Newton
# (quasi-DEER, Gonzalez et al. 2024) keeps only the diagonal of each $J_t$. The second half
# of this page runs one short check of each option the cells gained alongside: layer
# normalisation, projection, the continuous-time RNN, episode resets, recurrent dropout and
# zoneout.
#
# *Quick sizes:* 8 units, 60 steps, float64; `docs/guide/parallel.md` has the table of methods
# and `benchmarks/_bench_parallel.py` their timings.

# %%
import functools
import itertools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import lstmjax as lj

jax.config.update("jax_enable_x64", True)
B, T, I, H = 4, 60, 3, 8
xs = jax.random.normal(jax.random.key(0), (B, T, I), jnp.float64)

# %% [markdown]
# ## Every method gives the scan's answer
#
# [`lj.unroll`](../../api/layers/#lstmjax.unroll) takes `method=`: `"scan"` (one step after
# another), `"newton"` (full Jacobians, memory $O(T B N^2)$ for a carry of size $N$) and
# `"quasi_newton"` (diagonal Jacobians, $O(T B N)$). The solvers iterate until
# $\max_t |h_t - f(h_{t-1}, x_t)|$ is below a tolerance set by the dtype ($10^{-12}$ in
# float64), and `unroll` raises if they do not get there. Gradients are implicit (an adjoint
# recurrence at the solution, never backpropagation through the iterations), so `jax.grad`
# through them gives BPTT's gradient (tested to 1e-8 relative).

# %%
gru = lj.gru(H, dtype=jnp.float64)
gru_params = gru.init(jax.random.key(1), I)
ys_scan, h_scan = lj.unroll(gru, gru_params, xs, method="scan")
for method in ("newton", "quasi_newton"):
    # Under jit a solve that has not converged returns NaN everywhere, not an error.
    ys, h = jax.jit(functools.partial(lj.unroll, gru, method=method))(gru_params, xs)
    print(
        f"{method:>12}: largest |ys - ys_scan| = "
        f"{float(jnp.abs(ys - ys_scan).max()):.1e}"
    )

# %% [markdown]
# ## Watching the solver converge
#
# [`lj.unroll_parallel`](../../api/layers/#lstmjax.unroll_parallel) returns the solver's
# [`ParallelInfo`](../../api/layers/#lstmjax.ParallelInfo) as well: the iterations used, the
# final residual and whether it converged. Capping `max_iters` shows the residual after
# that many iterations. Newton converges quadratically once close; quasi-Newton, with only
# the diagonal of each Jacobian, linearly. Both are exact after at most $T$ iterations,
# since each iteration makes at least one more step exact.

# %%
_, _, info = lj.unroll_parallel(gru, gru_params, xs, method="quasi_newton")
print(
    f"quasi_newton: {int(info.iterations)} iterations, residual "
    f"{float(info.residual):.1e}, "
    f"converged {bool(info.converged)}"
)
counts = {"newton": [1, 2, 4], "quasi_newton": [10]}
# The option objects: lj.Newton(max_iters=n) caps the iterations.
solvers = {"newton": lj.Newton, "quasi_newton": lj.QuasiNewton}
residuals = {}
for method, ns in counts.items():
    capped = [solvers[method](max_iters=n) for n in ns]
    residuals[method] = [
        float(lj.unroll_parallel(gru, gru_params, xs, method=m)[2].residual)
        for m in capped
    ]
counts["quasi_newton"].append(int(info.iterations))  # the converged solve above
residuals["quasi_newton"].append(float(info.residual))
for method, ns in counts.items():
    print(
        f"{method:>12}: residual after {ns} iterations: "
        + ", ".join(f"{r:.0e}" for r in residuals[method])
    )
plt.figure(figsize=(5, 3))
for method, r in residuals.items():
    plt.semilogy(counts[method], r, "o-", label=method)
plt.axhline(1e-12, color="k", ls="--", lw=0.8, label="float64 tolerance")
plt.xlabel("iteration")
plt.ylabel(r"residual $\max_t |h_t - f(h_{t-1}, x_t)|$")
plt.title(f"GRU, H = {H}, T = {T}")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## minGRU: an affine step, one exact scan
#
# [`lj.min_gru`](../../api/cells/#lstmjax.min_gru) (Feng et al. 2024) lets no gate see
# $h_{t-1}$: $z_t = \sigma(x_t W_{xz} + b_z)$, $h_t = (1 - z_t) h_{t-1} + z_t\, g(x_t W_{xh} +
# b_h)$. The step is affine in the carry, so `unroll` runs it as one affine scan, with no
# iterations at all (`method="auto"` picks `"affine"` for it). We check it against the
# equations stepped by hand.

# %%
mgru = lj.min_gru(H, dtype=jnp.float64)
mgru_params = mgru.init(jax.random.key(2), I)
ys_affine, _ = lj.unroll(mgru, mgru_params, xs)  # method="auto": the affine scan
pre = xs @ mgru_params.w_x + mgru_params.b
z, v = jax.nn.sigmoid(pre[..., :H]), pre[..., H:]
g = jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))
h, by_hand = jnp.zeros((B, H)), []
for t in range(T):
    h = (1 - z[:, t]) * h + z[:, t] * g[:, t]
    by_hand.append(h)
print(
    f"minGRU: largest |affine scan - by hand| = "
    f"{float(jnp.abs(ys_affine - jnp.stack(by_hand, 1)).max()):.1e}"
)

# %% [markdown]
# ## Forward mode through the LSTM
#
# The LSTM and GRU steps carry a hand-written `custom_jvp` (its transpose is the hand-written
# backward pass), so forward-mode derivatives work: `jax.jvp`, `jax.jacfwd`, `jax.hessian`.
# A directional derivative should match a central finite difference and the reverse-mode
# gradient dotted with the same direction.

# %%
lstm = lj.lstm(H, dtype=jnp.float64)
lstm_params = lstm.init(jax.random.key(3), I)


@jax.jit
def lstm_loss(p):
    return jnp.sum(jnp.square(lj.unroll(lstm, p, xs)[0][:, -1]))


direction = jax.tree_util.tree_map(
    lambda a: jax.random.normal(jax.random.key(4), a.shape, a.dtype), lstm_params
)
_, forward = jax.jvp(lstm_loss, (lstm_params,), (direction,))
eps = 1e-6
shifted = [
    jax.tree_util.tree_map(lambda a, d, s=s: a + s * eps * d, lstm_params, direction)
    for s in (1, -1)
]
finite = (lstm_loss(shifted[0]) - lstm_loss(shifted[1])) / (2 * eps)
reverse = sum(
    jnp.vdot(a, d)
    for a, d in zip(
        jax.tree_util.tree_leaves(jax.grad(lstm_loss)(lstm_params)),
        jax.tree_util.tree_leaves(direction),
        strict=True,
    )
)
print(
    f"jvp {float(forward):.10f}   finite difference {float(finite):.10f}   "
    f"grad . v {float(reverse):.10f}"
)

# %% [markdown]
# ## The layer-normalised and the projected LSTM
#
# `lj.lstm(H, layer_norm=True)` (Ba, Kiros & Hinton 2016) normalises $x_t W_x$ and
# $h_{t-1} W_h$ separately before adding them, and $c_t$ before its tanh. Normalisation
# removes scale, so multiplying $W_x$ by 10 changes the plain LSTM's outputs but hardly the
# normalised one's (only through the $10^{-5}$ in the normaliser's denominator).
#
# `proj_size=P` (LSTMP, Sak et al. 2014; PyTorch's `proj_size`) multiplies the output by
# `w_proj` `[H, P]`: $h_t = (o_t \odot \tanh c_t) W_{proj}$, so $h$ is $P$ wide while $c$
# stays $H$ wide, and $W_h$ is `[P, 4H]`.

# %%
for layer_norm in (False, True):
    cell = lj.lstm(H, layer_norm=layer_norm, dtype=jnp.float64)
    p = cell.init(jax.random.key(5), I)
    run = jax.jit(lambda p, cell=cell: lj.unroll(cell, p, xs)[0])
    ys, ys_scaled = run(p), run(p._replace(w_x=10.0 * p.w_x))
    print(
        f"layer_norm={layer_norm!s:>5}: largest change from W_x -> 10 W_x = "
        f"{float(jnp.abs(ys - ys_scaled).max()):.1e}"
    )

P = 3
lstmp = lj.lstm(H, proj_size=P, dtype=jnp.float64)
pp = lstmp.init(jax.random.key(6), I)
print("w_h", pp.w_h.shape, "w_proj", pp.w_proj.shape)
carry0 = lstmp.initial_carry(B)
carry1, _ = lstmp.step(pp, carry0, xs[:, 0])
print("h", carry1.h.shape, "c", carry1.c.shape)
zz = xs[:, 0] @ pp.w_x + carry0.h @ pp.w_h + pp.b
zi, zf, zg, zo = jnp.split(zz, 4, axis=-1)
c1 = jax.nn.sigmoid(zf) * carry0.c + jax.nn.sigmoid(zi) * jnp.tanh(zg)
h1 = (jax.nn.sigmoid(zo) * jnp.tanh(c1)) @ pp.w_proj
gap = float(jnp.abs(h1 - carry1.h).max())
print(f"projected step, largest |h by hand - cell.step| = {gap:.1e}")

# %% [markdown]
# ## The continuous-time RNN: Euler against RK4
#
# [`lj.ctrnn`](../../api/cells/#lstmjax.ctrnn) integrates
# $\tau\, dh/dt = -h + \tanh(x W_x + h W_h + b)$ over one step of length `dt` per input,
# holding the input constant over the step. `dt` and `tau` change the dynamics, never the
# parameters, so the same parameters run at any step. Over a fixed time span the error
# against the exact flow falls as `dt` with `integrator="euler"` and as `dt`$^4$ with
# `"rk4"`; the reference here is RK4 at a far smaller step.

# %%
span, x_const = 4.0, jnp.ones((1, 1, I), jnp.float64)
h_start = 0.8 * jax.random.normal(jax.random.key(7), (1, H), jnp.float64)
ct_params = lj.ctrnn(H, dtype=jnp.float64).init(jax.random.key(8), I)
ct_params = ct_params._replace(w_h=2.0 * ct_params.w_h)  # a gain > 1: a nonlinear flow


@functools.cache
def trajectory(dt, integrator):
    cell = lj.ctrnn(H, tau=1.0, dt=dt, integrator=integrator, dtype=jnp.float64)
    steps = round(span / dt)
    return lj.unroll(cell, ct_params, jnp.tile(x_const, (1, steps, 1)), h_start)[0][0]


exact = trajectory(span / 3200, "rk4")
dts = [0.4, 0.2, 0.1]
errors = {
    m: [float(jnp.abs(trajectory(dt, m)[-1] - exact[-1]).max()) for dt in dts]
    for m in ("euler", "rk4")
}
for m, e in errors.items():
    print(
        f"{m:>5}: error at t = {span} for dt = {dts}: "
        + ", ".join(f"{v:.1e}" for v in e)
        + f"; ratio per halving {e[-2] / e[-1]:.1f}"
    )

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3))
t_fine = np.linspace(span / 3200, span, 3200)
for u in range(3):
    ax.plot(t_fine, exact[:, u], color=f"C{u}", lw=1)
    t_coarse = np.arange(1, 11) * 0.4
    ax.plot(t_coarse, trajectory(0.4, "euler")[:, u], "x", color=f"C{u}")
    ax.plot(t_coarse, trajectory(0.4, "rk4")[:, u], "o", color=f"C{u}", mfc="none")
ax.set(
    xlabel="t", ylabel="h (3 units)", title="exact (line), Euler (x), RK4 (o), dt = 0.4"
)
for m, e in errors.items():
    ax2.loglog(dts, e, "o-", label=m)
ax2.set(xlabel="dt", ylabel=f"max error at t = {span}", title="error against the step")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Episode resets
#
# `resets=` (bool `[B, T]`) sets a sequence's carry back to its initial value before every
# step where it holds, as at the start of a new episode or document, without splitting the
# batch. A batch with resets equals running each segment on its own.

# %%
resets = (
    jnp.zeros((B, T), bool).at[0, 25].set(True).at[1, 20].set(True).at[1, 40].set(True)
)
ys_reset, _ = lj.unroll(gru, gru_params, xs, resets=resets)
unroll_gru = jax.jit(functools.partial(lj.unroll, gru))
worst = 0.0
for b in (1,):  # sequence 1: three segments of 20 steps
    cuts = [0] + [int(t) for t in jnp.flatnonzero(resets[b])] + [T]
    for start, stop in itertools.pairwise(cuts):
        alone, _ = unroll_gru(gru_params, xs[b : b + 1, start:stop])
        worst = max(worst, float(jnp.abs(ys_reset[b, start:stop] - alone[0]).max()))
print(f"resets: largest |batch with resets - segments alone| = {worst:.1e}")

# %% [markdown]
# ## Recurrent dropout and zoneout
#
# [`lj.recurrent`](../../api/layers/#lstmjax.recurrent) takes `recurrent_dropout=` (Gal &
# Ghahramani 2016: one mask on $h_{t-1}$, the same at every step) and `zoneout=` (Krueger et
# al. 2017: each carry unit keeps its previous value with that probability). They act only
# when `apply` gets a `key`; a different key gives a different mask. With
# `deterministic=True` (evaluation), recurrent dropout is off and zoneout acts by its
# expected value; a net with these options given neither a key nor `deterministic=True`
# raises, so a forgotten key never trains silently without them.

# %%
plain = lj.recurrent(lj.lstm(H, dtype=jnp.float64))
dropped = lj.recurrent(lj.lstm(H, dtype=jnp.float64), recurrent_dropout=0.3)
zoned = lj.recurrent(lj.lstm(H, dtype=jnp.float64), zoneout=0.2)
net_params = plain.init(jax.random.key(9), I)
o_plain, _ = plain.apply(net_params, xs)
for label, net in (("recurrent_dropout=0.3", dropped), ("zoneout=0.2", zoned)):
    apply = jax.jit(net.apply, static_argnames="deterministic")
    o_key1, _ = apply(net_params, xs, key=jax.random.key(10))
    o_key2, _ = apply(net_params, xs, key=jax.random.key(11))
    o_nokey, _ = apply(net_params, xs, deterministic=True)
    print(
        f"{label}: two keys differ by {float(jnp.abs(o_key1 - o_key2).max()):.2f}, "
        f"no key against the plain net {float(jnp.abs(o_nokey - o_plain).max()):.2f}"
    )

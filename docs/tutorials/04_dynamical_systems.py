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
# # 4. Dynamical systems: RK4, and learning a pendulum and the Lorenz system
#
# A recurrent network *is* a discrete dynamical system, $h_t = F(h_{t-1}, x_t)$. Here it learns
# one. The training data come from integrating two ordinary differential equations with the
# classical fourth-order Runge-Kutta method, so we first check that the integrator has the order
# it should.
#
# *Quick sizes:* 32 units, 300 training steps per system; `experiments/dynamical_system.py`
# trains longer (persistence MSE / one-step MSE of 906 for the RNN on the pendulum and 1.1e4 on
# Lorenz in the [report](../../results/REPORT/)).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import lstmjax as lj
from lstmjax import losses, tasks, train

# %% [markdown]
# ## RK4 has order 4
#
# For $\dot y = f(t, y)$ one RK4 step is
# $k_1 = f(t, y)$, $k_2 = f(t + \tfrac{h}{2}, y + \tfrac{h}{2} k_1)$, $k_3 = f(t + \tfrac{h}{2}, y + \tfrac{h}{2} k_2)$,
# $k_4 = f(t + h, y + h k_3)$, $y' = y + \tfrac{h}{6}(k_1 + 2k_2 + 2k_3 + k_4)$.
# Its global error after a fixed time is $O(h^4)$; forward Euler's, $y' = y + h f(t, y)$, is $O(h)$.
# On the harmonic oscillator $\ddot\theta = -\theta$ the exact solution is $\theta(t) = \cos t$.

# %%
jax.config.update("jax_enable_x64", True)


def oscillator(t, y):
    return jnp.stack([y[..., 1], -y[..., 0]], axis=-1)


def euler(f, y0, dt, n):
    y = y0
    for i in range(n):
        y = y + dt * f(i * dt, y)
    return y


y0, t_end = jnp.array([1.0, 0.0]), 10.0
exact = jnp.array([jnp.cos(t_end), -jnp.sin(t_end)])
steps = np.array([0.2, 0.1, 0.05, 0.025])
err_rk4 = [
    float(jnp.linalg.norm(tasks.rk4(oscillator, y0, h, round(t_end / h))[-1] - exact))
    for h in steps
]
err_euler = [
    float(jnp.linalg.norm(euler(oscillator, y0, h, round(t_end / h)) - exact))
    for h in steps
]
slope_rk4 = np.polyfit(np.log(steps), np.log(err_rk4), 1)[0]
slope_euler = np.polyfit(np.log(steps), np.log(err_euler), 1)[0]
print(f"log-log slope of the error: RK4 {slope_rk4:.2f}, Euler {slope_euler:.2f}")
jax.config.update("jax_enable_x64", False)  # the networks train in float32

# %% [markdown]
# ## One-step prediction
#
# A damped pendulum, $\ddot\theta = -\omega^2 \sin\theta - \gamma\dot\theta$, sampled every $0.1$ time
# units, and the Lorenz system ($\sigma = 10, \rho = 28, \beta = 8/3$) on its attractor, sampled every
# $0.01$. An RNN reads the state $s_t$ and a dense read-out predicts $s_{t+1}$ at every step
# (many-to-many). The baseline is **persistence**, $\hat s_{t+1} = s_t$, which needs no model.
# The network predicts the *change*, $\hat s_{t+1} = s_t + 0.1\, W h_t$, so that training starts
# near persistence and only has to learn the dynamics.


# %%
def fit_predictor(trajectory_fn, dim, scale, num_steps=300, seed=0):
    cell, head = lj.rnn(32), lj.dense(dim)
    key = jax.random.key(seed)
    k_cell, k_head = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    params = (cell.init(k_cell, dim), head.init(k_head, 32))

    def apply_fn(p, xs):  # predict the change: persistence is where training starts
        hs, _ = lj.unroll(cell, p[0], xs)
        return xs + 0.1 * head.apply(p[1], hs)

    def make_batch(k):
        s = trajectory_fn(k) / scale
        return s[:, :-1], s[:, 1:]  # inputs s_t, targets s_{t+1}

    schedule = optax.cosine_decay_schedule(1e-2, num_steps)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    step = train.make_train_step(apply_fn, losses.mse, optimizer)
    state = train.init_state(params, optimizer, key=jax.random.fold_in(key, 2))
    batches = train.keyed_batches(jax.random.fold_in(key, 3), make_batch)
    for i in range(num_steps):
        state, _ = step(state, batches(i))
    test_in, test_out = make_batch(jax.random.key(1000 + seed))
    predicted = apply_fn(state.params, test_in)
    model_mse = float(losses.mse(predicted, test_out))
    persistence = float(
        tasks.persistence_mse(jnp.concatenate([test_in, test_out[:, -1:]], 1))
    )
    return apply_fn, state.params, test_in, test_out, predicted, model_mse, persistence


pendulum = fit_predictor(
    lambda k: tasks.pendulum_trajectories(k, 64, 60), dim=2, scale=3.0
)
lorenz = fit_predictor(
    lambda k: tasks.lorenz_trajectories(k, 64, 80, burn_in=200), dim=3, scale=20.0
)
for name, result in [("pendulum", pendulum), ("Lorenz", lorenz)]:
    mse, base = result[5], result[6]
    print(
        f"{name}: one-step MSE {mse:.2e}, persistence {base:.2e}, ratio "
        f"{base / mse:.0f}"
    )

# %% [markdown]
# The figure shows a held-out trajectory of each system and the network's one-step predictions
# (each from the true state before it).

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
_, _, test_in, test_out, predicted, _, _ = pendulum
axes[0].plot(test_out[0, :, 0], label="angle (true)")
axes[0].plot(predicted[0, :, 0], "--", label="angle (one-step prediction)")
axes[0].set_title("damped pendulum")
axes[0].set_xlabel("step")
axes[0].legend()
_, _, test_in, test_out, predicted, _, _ = lorenz
axes[1].plot(test_out[0, :, 0], test_out[0, :, 2], label="x-z (true)")
axes[1].plot(
    predicted[0, :, 0], predicted[0, :, 2], "--", label="x-z (one-step prediction)"
)
axes[1].set_title("Lorenz system (scaled by 1/20)")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# One-step prediction is the easy half. Fed its own predictions (a rollout), any model of the
# Lorenz system drifts away from the truth at the rate of the attractor's largest Lyapunov
# exponent ($\approx 0.9$ per time unit): the full experiment measures that growth rate for its
# trained models.

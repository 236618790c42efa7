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
# # Forecasting the sunspot numbers
#
# The yearly mean sunspot numbers, 1700-2008, ship with statsmodels
# (`statsmodels.api.datasets.sunspots`): no download. We forecast one year ahead on the last
# 40 years, held out, with three models, each fitted on 1700-1968 only:
#
# - **persistence**: next year equals this year;
# - **AutoReg(9)**: statsmodels' autoregressive model of order 9, fitted by least squares;
# - **an LSTM** of 32 units reading the last 20 years (many-to-one), trained with Adam.
#
# Each forecast for year $t$ uses the true values up to $t - 1$. Needs `pip install -e ".[examples]"`.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import statsmodels.api as sm
from statsmodels.tsa.ar_model import AutoReg

import lstmjax as lj
from lstmjax import losses, train

data = sm.datasets.sunspots.load_pandas().data
years, series = data["YEAR"].to_numpy().astype(int), data["SUNACTIVITY"].to_numpy()
n_test, window, lags = 40, 20, 9
split = len(series) - n_test
print(f"{len(series)} years, {years[0]}-{years[-1]}; test {years[split]}-{years[-1]}")
test_true = series[split:]


def rmse(prediction):
    return float(np.sqrt(np.mean((prediction - test_true) ** 2)))


# %% [markdown]
# ## The baselines

# %%
persistence = series[split - 1 : -1]
ar = AutoReg(series[:split], lags=lags).fit()
const, coefs = ar.params[0], ar.params[1:]  # y_t = c + sum_j a_j y_{t-j}
test_years = range(split, len(series))
autoreg = np.array([const + coefs @ series[t - lags : t][::-1] for t in test_years])
print(
    f"persistence RMSE {rmse(persistence):.1f}, AutoReg({lags}) RMSE "
    f"{rmse(autoreg):.1f}"
)

# %% [markdown]
# ## The LSTM
#
# Inputs and targets are scaled by $1/100$. The training windows are every stretch of 20 years
# that ends before 1969; the model reads them and a dense layer reads its last output. Five
# seeds, to show how much the result depends on the initialisation.

# %%
scaled = series / 100.0
starts = np.arange(0, split - window)
train_x = np.stack([scaled[s : s + window] for s in starts])[:, :, None].astype(
    np.float32
)
train_y = scaled[starts + window][:, None].astype(np.float32)
test_x = np.stack([scaled[t - window : t] for t in test_years])[:, :, None].astype(
    np.float32
)
cell, head = lj.lstm(32), lj.dense(1)


def apply_fn(p, xs):
    hs, _ = lj.unroll(cell, p[0], xs)
    return head.apply(p[1], hs[:, -1])


NUM_STEPS = 400
schedule = optax.cosine_decay_schedule(1e-2, NUM_STEPS, alpha=0.05)
optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
# One step for every seed: compiled once.
step = train.make_train_step(apply_fn, losses.mse, optimizer)
batch = (jnp.asarray(train_x), jnp.asarray(train_y))  # all 229 windows: full-batch Adam


def fit_lstm(seed):
    key = jax.random.key(seed)
    k_cell, k_head, k_state = (jax.random.fold_in(key, i) for i in range(3))
    params = (cell.init(k_cell, 1), head.init(k_head, 32))
    state = train.init_state(params, optimizer, key=k_state)
    for _ in range(NUM_STEPS):
        state, _ = step(state, batch)
    return 100.0 * np.asarray(apply_fn(state.params, test_x))[:, 0]


lstm_runs = [fit_lstm(seed) for seed in range(5)]
lstm_rmse = [rmse(p) for p in lstm_runs]
print("LSTM RMSE per seed:", " ".join(f"{r:.1f}" for r in lstm_rmse))
low, high = np.min(lstm_rmse), np.max(lstm_rmse)
print(f"LSTM RMSE mean {np.mean(lstm_rmse):.1f} (min {low:.1f}, max {high:.1f})")

# %%
plt.figure(figsize=(9, 3.5))
plt.plot(years[split - 30 :], series[split - 30 :], "k", label="observed")
plt.plot(
    years[split:], persistence, ":", label=f"persistence ({rmse(persistence):.1f})"
)
plt.plot(years[split:], autoreg, "--", label=f"AutoReg({lags}) ({rmse(autoreg):.1f})")
plt.plot(
    years[split:],
    lstm_runs[int(np.argsort(lstm_rmse)[2])],
    label=f"LSTM, median seed ({np.median(lstm_rmse):.1f})",
)
plt.axvline(years[split] - 0.5, color="gray", lw=0.5)
plt.ylabel("sunspot number")
plt.title("one-year-ahead forecasts on the held-out years (RMSE)")
plt.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Both learned models beat persistence by a wide margin. In the run shown on this page the
# LSTM's error was below AutoReg's for every seed; with 269 training years, a 9-coefficient
# linear model stays a strong and far cheaper competitor, and the gap is a few sunspot units
# on a 40-year window, so read it as "at least as good", not as a general verdict.

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
# # 8. From PyTorch and back
#
# Train a `torch.nn.LSTM` for a while, carry on in lstmjax with Optax, and hand the weights back
# to PyTorch. At each crossing we check that both libraries compute the same function with the
# same weights. The layout and the weight mapping are on the
# [Coming from PyTorch](../../coming-from-pytorch/) page.
#
# The task: predict the next value of a noisy sum of two sines (many-to-many regression).

# %%
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import lstmjax as lj
from lstmjax import losses

torch.manual_seed(0)
torch.set_num_threads(1)  # small matrices: one thread is the faster torch here
rng = np.random.default_rng(0)


def batch(n=32, t=40):
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    time = np.arange(t + 1)[None, :] * 0.3
    wave = np.sin(time + phase) + 0.5 * np.sin(2.1 * time + 2 * phase)
    wave = wave + 0.05 * rng.standard_normal(wave.shape)
    return wave[:, :-1, None].astype(np.float32), wave[:, 1:, None].astype(np.float32)


# %% [markdown]
# ## 1. Train in PyTorch


# %%
class TorchModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(1, 32, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(32, 1)

    def forward(self, x):
        o, _ = self.lstm(x)
        return self.head(o)


torch_model = TorchModel()
opt = torch.optim.Adam(torch_model.parameters(), lr=1e-2)
for _ in range(100):
    x, y = batch()
    loss = torch.nn.functional.mse_loss(
        torch_model(torch.from_numpy(x)), torch.from_numpy(y)
    )
    opt.zero_grad()
    loss.backward()
    opt.step()
test_x, test_y = batch(256)
with torch.no_grad():
    torch_mse = float(
        torch.nn.functional.mse_loss(
            torch_model(torch.from_numpy(test_x)), torch.from_numpy(test_y)
        )
    )
print(f"PyTorch after 100 steps: test MSE {torch_mse:.4f}")

# %% [markdown]
# ## 2. Import into lstmjax
#
# [`lj.interop.from_torch`](../../api/interop/#lstmjax.interop.from_torch) returns a
# `lj.recurrent` net and its parameters; the `Linear` head is two arrays we copy by hand
# (`w = weight.T`).

# %%
net, lstm_params = lj.interop.from_torch(torch_model.lstm)
head = lj.dense(1)
head_params = head.init(jax.random.key(0), 32)._replace(
    w=jnp.asarray(torch_model.head.weight.detach().numpy().T),
    b=jnp.asarray(torch_model.head.bias.detach().numpy()),
)
params = (lstm_params, head_params)


def apply_fn(p, xs):
    o, _ = net.apply(p[0], xs)
    return head.apply(p[1], o)


with torch.no_grad():
    torch_out = torch_model(torch.from_numpy(test_x)).numpy()
print(
    "largest |lstmjax - torch| on the test batch:",
    float(np.abs(apply_fn(params, test_x) - torch_out).max()),
)

# %% [markdown]
# ## 3. Continue training in lstmjax

# %%
optimizer = optax.adam(3e-3)
opt_state = optimizer.init(params)


@jax.jit
def train_step(p, s, x, y):
    value, grads = jax.value_and_grad(lambda q: losses.mse(apply_fn(q, x), y))(p)
    updates, s = optimizer.update(grads, s)
    return optax.apply_updates(p, updates), s, value


for _ in range(200):
    x, y = batch()
    params, opt_state, _ = train_step(params, opt_state, x, y)
jax_mse = float(losses.mse(apply_fn(params, test_x), test_y))
print(f"lstmjax after 200 more steps: test MSE {jax_mse:.4f} (was {torch_mse:.4f})")

# %% [markdown]
# ## 4. Export back to PyTorch
#
# [`lj.interop.to_torch_state_dict`](../../api/interop/#lstmjax.interop.to_torch_state_dict)
# writes a `state_dict` for a module of the same configuration.

# %%
torch_model.lstm.load_state_dict(lj.interop.to_torch_state_dict(net, params[0]))
with torch.no_grad():
    torch_model.head.weight.copy_(torch.from_numpy(np.asarray(params[1].w).T.copy()))
    torch_model.head.bias.copy_(torch.from_numpy(np.array(params[1].b)))
    back = torch_model(torch.from_numpy(test_x)).numpy()
print(
    "largest |torch (exported) - lstmjax|:",
    float(np.abs(back - np.asarray(apply_fn(params, test_x))).max()),
)
print(
    "torch test MSE with the exported weights: "
    f"{float(np.mean((back - test_y) ** 2)):.4f}"
)

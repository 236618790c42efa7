"""Where the lectures start: a perceptron cannot do XOR, a trained MLP can.

Two 2-D data sets: a linearly separable one (two Gaussian blobs) and XOR
(noisy points around the corners of the unit square, label = x1 xor x2).

  * perceptron with the Heaviside step, f(x) = H(w . x + b), trained by
    Rosenblatt's learning rule (no gradient: the step's derivative is zero
    wherever it exists, which the script checks with `jax.grad`);
  * perceptron with the sigmoid, trained by gradient descent on the binary
    cross-entropy;
  * an MLP (`lstmjax.mlp`, one tanh hidden layer) trained by backpropagation
    (Adam) on the same loss.

Decision regions are drawn for each; accuracies go to the JSON.

    python experiments/perceptron_mlp.py [--quick] [--out DIR]
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _common import Report, anchor, fmt, parse_args, progress, publish

import lstmjax as lj

NAME = "perceptron_mlp"
F32 = jnp.float32


def make_data(key, n: int) -> dict:
    """`{"separable": (x [n, 2], y [n]), "xor": (x [n, 2], y [n])}`, labels in {0, 1}."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    labels = jax.random.bernoulli(k1, 0.5, (n,)).astype(F32)
    centres = jnp.stack([labels * 2.0 - 1.0, labels * 2.0 - 1.0], axis=1)  # (-1,-1) or (1,1)
    separable = centres + 0.35 * jax.random.normal(k2, (n, 2), F32)
    corners = jax.random.bernoulli(k3, 0.5, (n, 2)).astype(F32)
    xor_x = corners + 0.12 * jax.random.normal(k4, (n, 2), F32)
    xor_y = jnp.abs(corners[:, 0] - corners[:, 1])
    return {"separable": (separable, labels), "xor": (xor_x, xor_y)}


def linear(params, x):
    """w . x + b for `x: [n, 2]`; params = (w [2], b [])."""
    w, b = params
    return x @ w + b


def heaviside(z):
    return (z >= 0).astype(z.dtype)


@partial(jax.jit, static_argnums=2)
def perceptron_rule(x, y, epochs: int, lr: float = 0.1):
    """Rosenblatt's rule, one sample at a time: w += lr (y - H(w.x + b)) x.

    Returns the final params and the number of mistakes in each epoch `[epochs]`.
    """

    def sample(params, xy):
        xi, yi = xy
        err = yi - heaviside(linear(params, xi[None])[0])
        w, b = params
        return (w + lr * err * xi, b + lr * err), jnp.abs(err)

    def epoch(params, _):
        params, errors = jax.lax.scan(sample, params, (x, y))
        return params, jnp.sum(errors)

    return jax.lax.scan(epoch, (jnp.zeros(2, F32), jnp.zeros((), F32)), None, length=epochs)


def bce(logits, y):
    """Binary cross-entropy from logits, averaged."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))


@partial(jax.jit, static_argnums=(0, 4, 5))
def fit_gradient(apply, params, x, y, steps: int, optimizer: optax.GradientTransformation):
    """Full-batch training of `apply(params, x) -> logits [n]` on the BCE."""

    def step(carry, _):
        p, opt = carry
        loss, g = jax.value_and_grad(lambda q: bce(apply(q, x), y))(p)
        updates, opt = optimizer.update(g, opt, p)
        return (optax.apply_updates(p, updates), opt), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params, losses


def accuracy(pred_class, y) -> float:
    return float(jnp.mean((pred_class == y).astype(F32)))


def train_all(key, data: dict, config: dict, bar) -> dict:
    """Train the three models on both data sets; predictors and accuracies."""
    mlp = lj.mlp([config["mlp_hidden"], 1], jnp.tanh)
    mlp_apply = lambda p, x: mlp.apply(p, x)[:, 0]  # noqa: E731
    sgd = optax.sgd(config["sigmoid_lr"])
    adam = optax.adam(config["mlp_lr"])
    out = {}
    for name, (x, y) in data.items():
        step_params, mistakes = perceptron_rule(x, y, config["perceptron_epochs"])
        sig_params, sig_loss = fit_gradient(
            linear, (jnp.zeros(2, F32), jnp.zeros((), F32)), x, y, config["sigmoid_steps"], sgd
        )
        mlp_params, mlp_loss = fit_gradient(
            mlp_apply, mlp.init(key, 2), x, y, config["mlp_steps"], adam
        )
        predictors = {
            "perceptron_step": lambda q, p=step_params: heaviside(linear(p, q)),
            "perceptron_sigmoid": lambda q, p=sig_params: heaviside(linear(p, q)),
            "mlp": lambda q, p=mlp_params: heaviside(mlp_apply(p, q)),
        }
        out[name] = {
            "predictors": predictors,
            "accuracy": {m: accuracy(f(x), y) for m, f in predictors.items()},
            "perceptron_mistakes_per_epoch": mistakes,
            "sigmoid_loss": sig_loss,
            "mlp_loss": mlp_loss,
        }
        bar.update()
    return out


def step_gradient(data: dict) -> float:
    """Largest |gradient| of a squared loss through the Heaviside step, at random weights."""
    x, y = data["separable"]
    params = (jnp.asarray([0.3, -0.7], F32), jnp.asarray(0.1, F32))
    g = jax.grad(lambda p: jnp.mean(jnp.square(heaviside(linear(p, x)) - y)))(params)
    return float(max(jnp.max(jnp.abs(leaf)) for leaf in jax.tree_util.tree_leaves(g)))


TITLES = {
    "perceptron_step": "perceptron, Heaviside step\n(perceptron rule)",
    "perceptron_sigmoid": "perceptron, sigmoid\n(gradient descent)",
    "mlp": "MLP, 1 tanh hidden layer\n(backpropagation)",
}


def plot(data: dict, res: dict):
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.4), layout="constrained")
    g = np.linspace(-2.6, 2.6, 200)
    gx, gy = np.meshgrid(g, g)
    grid = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=1), F32)
    for row, (name, (x, y)) in enumerate(data.items()):
        x, y = np.asarray(x), np.asarray(y)
        for col, model in enumerate(TITLES):
            ax = axes[row, col]
            region = np.asarray(res[name]["predictors"][model](grid)).reshape(gx.shape)
            ax.contourf(gx, gy, region, levels=[-0.5, 0.5, 1.5], colors=["#f4c7c3", "#c6dbef"])
            ax.scatter(*x[y == 0].T, s=8, color="C3", label="class 0")
            ax.scatter(*x[y == 1].T, s=8, color="C0", label="class 1")
            acc = res[name]["accuracy"][model]
            ax.set_title(f"{TITLES[model]}\n{name}: accuracy {acc:.2f}", fontsize=10)
            lim = (-2.6, 2.6) if name == "separable" else (-0.6, 1.6)
            ax.set(xlim=lim, ylim=lim, xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    axes[0, 0].legend(loc="lower right", fontsize=8)
    return fig


def anchors_of(res: dict, grad: float) -> list[dict]:
    acc = {name: r["accuracy"] for name, r in res.items()}
    best_linear_xor = max(acc["xor"]["perceptron_step"], acc["xor"]["perceptron_sigmoid"])
    return [
        anchor("gradient through the Heaviside step", "0 (no learning signal)", grad, grad == 0),
        anchor(
            "step perceptron, separable data: accuracy",
            "1.0 (perceptron convergence theorem)",
            acc["separable"]["perceptron_step"],
            acc["separable"]["perceptron_step"] == 1.0,
        ),
        anchor(
            "sigmoid perceptron, separable data: accuracy",
            "1.0",
            acc["separable"]["perceptron_sigmoid"],
            acc["separable"]["perceptron_sigmoid"] == 1.0,
        ),
        anchor(
            "best perceptron on XOR: accuracy",
            "<= 0.8 (a line cuts off at most 3 of 4 corners)",
            best_linear_xor,
            best_linear_xor <= 0.8,
        ),
        anchor(
            "MLP on XOR: accuracy",
            ">= 0.99 (backprop solves XOR)",
            acc["xor"]["mlp"],
            acc["xor"]["mlp"] >= 0.99,
        ),
    ]


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    key = jax.random.PRNGKey(args.seed)
    config = {
        "points": 200,
        "perceptron_epochs": 50,
        "sigmoid_steps": 2000,
        "sigmoid_lr": 0.5,
        "mlp_hidden": 8,
        "mlp_steps": 2000,
        "mlp_lr": 0.03,
    }
    if args.quick:
        config |= {"perceptron_epochs": 20, "sigmoid_steps": 500, "mlp_steps": 600}
    k_data, k_model = jax.random.split(key)
    data = make_data(k_data, config["points"])
    bar = progress(desc=NAME, unit="data set", total=len(data))
    res = train_all(k_model, data, config, bar)
    bar.close()
    grad = step_gradient(data)
    results = {name: {k: v for k, v in r.items() if k != "predictors"} for name, r in res.items()}
    payload = {
        "data": {name: {"x": x, "y": y} for name, (x, y) in data.items()},
        "results": results,
        "step_gradient_max_abs": grad,
        "anchors": anchors_of(res, grad),
    }
    return publish(args, NAME, config, payload, {f"{NAME}.png": lambda _: plot(data, res)})


def report(result: dict) -> Report:
    acc = {name: r["accuracy"] for name, r in result["results"].items()}
    finding = (
        f"Separable data: step perceptron {fmt(acc['separable']['perceptron_step'])}, sigmoid "
        f"perceptron {fmt(acc['separable']['perceptron_sigmoid'])}; XOR: step perceptron "
        f"{fmt(acc['xor']['perceptron_step'])}, sigmoid perceptron "
        f"{fmt(acc['xor']['perceptron_sigmoid'])}, MLP {fmt(acc['xor']['mlp'])} accuracy; "
        f"the gradient through the step is {fmt(result['step_gradient_max_abs'])}."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

"""Activation functions and their derivatives: why sigmoid chains vanish.

tanh, sigmoid and ReLU with their derivatives (by `jax.grad`, checked against
the closed forms), sigmoid's largest slope 0.25 marked, and the product of
that slope over k steps, 0.25^k: the best a chain of k sigmoid units can do.

    python experiments/activations.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _common import Report, anchor, fmt, parse_args, progress, publish

NAME = "activations"

FUNCTIONS = {
    "tanh": (jnp.tanh, lambda x: 1.0 - jnp.tanh(x) ** 2),
    "sigmoid": (jax.nn.sigmoid, lambda x: jax.nn.sigmoid(x) * (1.0 - jax.nn.sigmoid(x))),
    "relu": (jax.nn.relu, lambda x: (x > 0).astype(x.dtype)),
}


def curves(x: np.ndarray) -> dict:
    """Values and autodiff derivatives of every activation on the grid `x: [N]`."""
    xs = jnp.asarray(x, jnp.float32)
    out = {}
    for name, (f, closed_form) in progress(FUNCTIONS.items(), desc=NAME, unit="function"):
        df = jax.vmap(jax.grad(f))(xs)
        out[name] = {
            "value": np.asarray(f(xs)),
            "derivative": np.asarray(df),
            "max_derivative": float(jnp.max(df)),
            "argmax_derivative": float(xs[jnp.argmax(df)]),
            "max_abs_error_vs_closed_form": float(jnp.max(jnp.abs(df - closed_form(xs)))),
        }
    return out


def plot(x: np.ndarray, res: dict, ks: np.ndarray, products: dict):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    colors = {"tanh": "C0", "sigmoid": "C1", "relu": "C2"}
    for name, c in res.items():
        axes[0].plot(x, c["value"], color=colors[name], label=name)
        axes[1].plot(x, c["derivative"], color=colors[name], label=f"{name}'")
    axes[0].set(title="Activations", xlabel="x", ylabel="f(x)", ylim=(-1.2, 2.2))
    axes[1].axhline(0.25, color="C1", ls=":", lw=1)
    axes[1].annotate(
        "sigmoid' max 0.25\nat x = 0",
        xy=(0.0, 0.25),
        xytext=(1.8, 0.5),
        arrowprops={"arrowstyle": "->"},
    )
    axes[1].set(title="Derivatives", xlabel="x", ylabel="f'(x)", ylim=(-0.05, 1.15))
    for ax in axes[:2]:
        ax.grid(alpha=0.3)
        ax.legend()
    for (label, values), color in zip(products.items(), ("C1", "C0"), strict=True):
        axes[2].semilogy(ks, values, marker=".", color=color, label=label)
    axes[2].set(
        title="Best case product of k derivatives",
        xlabel="k (steps through the chain)",
        ylabel="product of max derivatives",
    )
    axes[2].grid(alpha=0.3, which="both")
    axes[2].legend()
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    # The experiment is cheap, so --quick changes nothing.
    config = {"x_min": -6.0, "x_max": 6.0, "points": 601, "k_max": 30}
    x = np.round(np.linspace(config["x_min"], config["x_max"], config["points"]), 10)
    res = curves(x)
    ks = np.arange(config["k_max"] + 1)
    slope = res["sigmoid"]["max_derivative"]
    products = {
        "sigmoid: 0.25^k": slope**ks,
        "tanh: 1^k": res["tanh"]["max_derivative"] ** ks,
    }
    anchors = [
        anchor("max sigmoid'(x)", "0.25 (at x = 0)", slope, abs(slope - 0.25) < 1e-6),
        anchor(
            "max tanh'(x)",
            "1 (at x = 0)",
            res["tanh"]["max_derivative"],
            abs(res["tanh"]["max_derivative"] - 1.0) < 1e-6,
        ),
        anchor(
            "sigmoid chain bound at k = 10",
            "0.25^10 = 9.54e-07",
            products["sigmoid: 0.25^k"][10],
            abs(products["sigmoid: 0.25^k"][10] / 0.25**10 - 1) < 1e-5,
        ),
    ]
    data = {"x": x, "functions": res, "k": ks, "products": products, "anchors": anchors}
    figures = {f"{NAME}.png": lambda _: plot(x, res, ks, products)}
    return publish(args, NAME, config, data, figures)


def report(result: dict) -> Report:
    f = result["functions"]
    products = result["products"]["sigmoid: 0.25^k"]
    finding = (
        f"The sigmoid's slope peaks at {fmt(f['sigmoid']['max_derivative'])} "
        f"(x = {fmt(f['sigmoid']['argmax_derivative'])}), tanh's at "
        f"{fmt(f['tanh']['max_derivative'])}; a chain of 10 sigmoids passes at most "
        f"{fmt(products[10])} of a gradient, of 20 at most {fmt(products[20])}."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

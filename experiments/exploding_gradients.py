"""Exploding and vanishing Jacobian products in RNNs with W = rho * orthogonal.

For h_t = act(x_t W_x + h_{t-1} W + b) the Jacobian of the state k steps
back is a product of k factors diag(act'(.)) W^T. With W = rho * Q, Q
orthogonal, every singular value of W is rho, so:
  * linear RNN: ||d h_T / d h_{T-k}|| = rho^k exactly;
  * tanh RNN (|tanh'| <= 1): at most lambda_1^k (Pascanu et al. 2013);
  * sigmoid RNN (sigmoid' <= 1/4): at most (lambda_1 / 4)^k,
with lambda_1 the largest singular value of W, measured here with
`lstmjax.diagnostics.spectral_norm`. The norms come from
`lstmjax.diagnostics.jacobian_norms`, in float64.

    python experiments/exploding_gradients.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _common import (
    Report,
    anchor,
    enable_x64,
    fmt,
    parse_args,
    progress,
    publish,
    seed_everything,
)

import lstmjax as lj
from lstmjax import diagnostics

NAME = "exploding_gradients"
RHOS = (0.5, 0.9, 1.0, 1.1, 1.5)
ACTIVATIONS = {
    "linear": (lambda v: v, 1.0),  # activation and the bound on its slope
    "tanh": (jnp.tanh, 1.0),
    "sigmoid": (jax.nn.sigmoid, 0.25),
}


def measure(key, config: dict) -> dict:
    """Jacobian norms against k for every activation and rho, with their bounds."""
    H, T, B = config["hidden"], config["steps"], config["batch"]
    kq, kp, kx = jax.random.split(key, 3)
    q = jax.nn.initializers.orthogonal()(kq, (H, H), jnp.float64)
    xs = jax.random.normal(kx, (B, T, config["inputs"]), jnp.float64)
    k = np.arange(T)
    out = {}
    bar = progress(desc=NAME, unit="net", total=len(ACTIVATIONS) * len(RHOS))
    for act_name, (act, slope) in ACTIVATIONS.items():
        cell = lj.rnn(H, activation=act, dtype=jnp.float64)
        base = cell.init(kp, config["inputs"])
        out[act_name] = {}
        for rho in RHOS:
            params = base._replace(w_h=rho * q)
            lam1 = float(diagnostics.spectral_norm(params.w_h))
            norms = np.asarray(
                jax.jit(diagnostics.jacobian_norms, static_argnums=0)(cell, params, xs)
            )[:, ::-1]  # [B, k]: column k is ||d h_{T-1} / d h_{T-1-k}||
            bound = (slope * lam1) ** k
            out[act_name][str(rho)] = {
                "lambda_1": lam1,
                "spectral_radius": float(diagnostics.spectral_radius(params.w_h)),
                "norm_mean": norms.mean(axis=0),
                "norm_min": norms.min(axis=0),
                "norm_max": norms.max(axis=0),
                "bound": bound,
                # The bound must hold for every example, so the worst one is compared;
                # k = 0 (the identity, ratio 1) is left out to keep the number informative.
                "max_ratio_to_bound": float(np.max(norms[:, 1:] / bound[1:])),
                "max_rel_error_vs_rho_k": float(np.max(np.abs(norms / rho**k - 1))),
            }
            bar.update()
    bar.close()
    return out


def plot(res: dict, k: np.ndarray):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    titles = {
        "linear": r"linear RNN: measured vs $\rho^k$",
        "tanh": r"tanh RNN: measured vs bound $\lambda_1^k$",
        "sigmoid": r"sigmoid RNN: measured vs bound $(\lambda_1/4)^k$",
    }
    for ax, (act_name, by_rho) in zip(axes, res.items(), strict=True):
        for i, (rho, r) in enumerate(by_rho.items()):
            color = f"C{i}"
            ax.semilogy(k, r["norm_mean"], color=color, label=rf"$\rho$ = {rho}")
            ax.fill_between(k, r["norm_min"], r["norm_max"], color=color, alpha=0.2)
            ax.semilogy(k, r["bound"], color=color, ls="--", lw=1)
        ax.set(title=titles[act_name], xlabel="k (steps back from T)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(
        r"$\|\partial h_T / \partial h_{T-k}\|_2$  (solid: batch mean, band: min-max)"
    )
    axes[0].legend(title="dashed: bound", fontsize=8)
    return fig


def anchors_of(res: dict) -> list[dict]:
    lin = max(r["max_rel_error_vs_rho_k"] for r in res["linear"].values())
    tanh = max(r["max_ratio_to_bound"] for r in res["tanh"].values())
    sig = max(r["max_ratio_to_bound"] for r in res["sigmoid"].values())
    # 1e-9 of slack for float64 rounding in the SVDs; the bound itself is exact.
    return [
        anchor("linear RNN: max |norm / rho^k - 1|", "<= 1e-4", lin, lin <= 1e-4),
        anchor("tanh RNN: max norm / lambda_1^k", "<= 1", tanh, tanh <= 1 + 1e-9),
        anchor("sigmoid RNN: max norm / (lambda_1/4)^k", "<= 1", sig, sig <= 1 + 1e-9),
    ]


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()
    key = seed_everything(args.seed)
    if args.quick:
        config = {"hidden": 32, "inputs": 32, "steps": 60, "batch": 2}
    else:
        config = {"hidden": 64, "inputs": 64, "steps": 150, "batch": 8}
    config |= {"rhos": list(RHOS), "inputs_distribution": "N(0, 1)", "dtype": "float64"}
    res = measure(key, config)
    k = np.arange(config["steps"])
    data = {"k": k, "results": res, "anchors": anchors_of(res)}
    return publish(args, NAME, config, data, {f"{NAME}.png": lambda _: plot(res, k)})


def report(result: dict) -> Report:
    res, kmax = result["results"], result["k"][-1]
    tanh15 = res["tanh"]["1.5"]
    finding = (
        f"Linear RNN: ||d h_T/d h_(T-k)|| = rho^k to "
        f"{fmt(max(r['max_rel_error_vs_rho_k'] for r in res['linear'].values()))} relative; "
        f"tanh with rho = 1.5 stays at {fmt(tanh15['norm_mean'][kmax])} at k = {kmax} "
        f"(bound {fmt(tanh15['bound'][kmax])}: the bound is necessary, not sufficient); "
        f"sigmoid with rho = 1.5 falls to {fmt(res['sigmoid']['1.5']['norm_mean'][kmax])}."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

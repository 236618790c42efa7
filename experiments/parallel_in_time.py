"""Residual against iteration of the parallel-in-time solvers (DEER, quasi-DEER, ELK).

For each cell at initialisation and for a tanh RNN in its chaotic regime
(recurrent gain 3 > 1), the max residual max_t |h_t - f(h_{t-1}, x_t)|
after k iterations of each method, from the zero guess. The papers'
qualitative claims: plain Newton converges in a few iterations for
contracting nets; for chaotic ones it stalls or blows up until the exact
prefix has grown (one state per iteration); the damped method stays finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _common import Report, anchor, enable_x64, fmt, parse_args, publish

import lstmjax as lj

NAME = "parallel_in_time"
METHODS = ("newton", "quasi_newton", "elk")


def cells(config):
    H = config["hidden"]
    return {
        "rnn": (lj.rnn(H, dtype=jnp.float64), 1.0),
        "gru": (lj.gru(H, dtype=jnp.float64), 1.0),
        "lstm": (lj.lstm(H, dtype=jnp.float64), 1.0),
        "rnn_chaotic": (lj.rnn(H, dtype=jnp.float64), config["chaotic_gain"]),
    }


def curve(cell, params, xs, method, iters) -> list[float]:
    """Residual after k = 1..iters iterations (inf/NaN kept as they are: divergence)."""
    out = []
    for k in range(1, iters + 1):
        _, _, info = lj.unroll_parallel(cell, params, xs, method=method, max_iters=k, tol=1e-300)
        out.append(float(info.residual))
    return out


def plot(result):
    names = list(result["curves"])
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for method, ys in result["curves"][name].items():
            ys = np.asarray(ys, float)
            ax.semilogy(
                np.arange(1, len(ys) + 1), np.where(np.isfinite(ys), ys, np.nan), label=method
            )
        ax.set_title(name)
        ax.set_xlabel("iteration")
    axes[0][0].set_ylabel("max residual")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()
    config = {"hidden": 16, "inputs": 4, "steps": 100, "batch": 4, "iters": 16, "chaotic_gain": 3.0}
    if args.quick:
        config |= {"hidden": 4, "steps": 10, "batch": 2, "iters": 4}
    key = jax.random.PRNGKey(args.seed)
    xs = jax.random.normal(key, (config["batch"], config["steps"], config["inputs"]), jnp.float64)
    curves = {}
    for name, (cell, gain) in cells(config).items():
        params = cell.init(jax.random.fold_in(key, 1), config["inputs"])
        params = params._replace(w_h=gain * params.w_h)
        curves[name] = {m: curve(cell, params, xs, m, config["iters"]) for m in METHODS}

    def first_below(ys, tol=1e-10):
        return next((k + 1 for k, y in enumerate(ys) if y <= tol), None)

    few = {n: first_below(curves[n]["newton"]) for n in ("rnn", "gru", "lstm")}
    chaotic = curves["rnn_chaotic"]
    anchors = [
        anchor("Newton converges in a few iterations for contracting nets (DEER)",
               "<= 10 iterations", max(v or 1e9 for v in few.values()),
               all(v is not None and v <= 10 for v in few.values())),
        anchor("ELK stays finite on the chaotic RNN (Gonzalez et al.)", "finite residuals",
               float(np.nanmax(np.asarray(chaotic["elk"]))),
               bool(np.all(np.isfinite(chaotic["elk"])))),
    ]  # fmt: skip
    data = {"curves": curves, "newton_iterations_to_1e-10": few, "anchors": anchors}
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    c = result["curves"]["rnn_chaotic"]
    finding = (
        "Newton reaches 1e-10 in "
        + ", ".join(f"{v} ({k})" for k, v in result["newton_iterations_to_1e-10"].items())
        + f" iterations at initialisation; on the chaotic tanh RNN (gain "
        f"{result['config']['chaotic_gain']}) after {len(c['newton'])} iterations the residual "
        f"is {fmt(c['newton'][-1])} (newton), {fmt(c['quasi_newton'][-1])} (quasi_newton), "
        f"{fmt(c['elk'][-1])} (elk)."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

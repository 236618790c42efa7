"""Edge of chaos: the largest Lyapunov exponent of h_t = tanh(g W h_{t-1}) against the gain g.

W_ij ~ N(0, 1/N). Below g = 1 the zero state is stable and attracts every
trajectory, so lambda_1 = log(g rho(W)), rho(W) -> 1 (circular law); above
g = 1 the network is chaotic and lambda_1 > 0 (Sompolinsky, Crisanti &
Sommers 1988 in continuous time; for the discrete map, the mean-field
exponent lambda = 1/2 log(g^2 E[sech^4(g sqrt(q) z)]), q = E[tanh^2(g sqrt(q) z)],
z ~ N(0, 1), which is log g below 1 and small but positive above).

lambda_1 comes from `lstmjax.dynamics.lyapunov_spectrum` (k = 1) of the
cell `lj.rnn(N)` with zero input and w_h = g W^T, from random N(0, 1)
initial states; the crossing is where the batch-mean lambda_1(g) first
changes sign, interpolated linearly, for N in {128, 512, 2048}.

    python experiments/edge_of_chaos.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _common import Report, anchor, fmt, parse_args, progress, publish, seed_everything

import lstmjax as lj
from lstmjax import dynamics

NAME = "edge_of_chaos"


def mean_field_exponent(g: float, nodes: int = 101) -> float:
    """lambda of the mean-field theory of the discrete map (Gauss-Hermite quadrature)."""
    if g <= 1.0:
        return float(np.log(g))
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    q = 1.0
    for _ in range(20_000):  # the fixed point of the variance map, converging slowly near 1
        q_new = float(np.sum(w * np.tanh(g * np.sqrt(q) * z) ** 2))
        if abs(q_new - q) < 1e-14:
            break
        q = q_new
    slope = np.sum(w * (1 - np.tanh(g * np.sqrt(q) * z) ** 2) ** 2)
    return float(0.5 * np.log(g * g * slope))


def crossing(gains, lam) -> float:
    """g where lam(g) first changes sign from < 0 to >= 0, linearly interpolated (nan if none)."""
    for i in range(1, len(gains)):
        if lam[i - 1] < 0 <= lam[i]:
            g0, g1, l0, l1 = gains[i - 1], gains[i], lam[i - 1], lam[i]
            return float(g0 + (g1 - g0) * (-l0) / (l1 - l0))
    return float("nan")


def exponents_for(key, size: int, gains, config: dict, bar) -> dict:
    """Batch-mean and per-start lambda_1 at each gain, for one W of this size."""
    dtype = jnp.float32  # N = 2048: float64 would double the time for nothing measurable here
    kw, kh = jax.random.split(key)
    W = jax.random.normal(kw, (size, size), dtype) / float(np.sqrt(size))  # a weak scalar
    B, warm, n = config["batch"], config["warmup"], config["measured"]
    xs = jnp.zeros((B, 2 * warm + n, 1), dtype)
    h0 = jax.random.normal(kh, (B, size), dtype)
    cell = lj.rnn(size, dtype=dtype)

    @jax.jit
    def lam(g):
        params = lj.RNNParams(
            w_x=jnp.zeros((1, size), dtype), w_h=g * W.T, b=jnp.zeros(size, dtype)
        )
        spec = dynamics.lyapunov_spectrum(cell, params, xs, h0, k=1, warmup=warm)
        return spec.exponents[:, 0], spec.running[:, :, 0]

    per_start, running = [], {}
    for g in gains:
        values, run = lam(jnp.asarray(g, dtype))
        per_start.append(np.asarray(values))
        if g in config["convergence_gains"]:
            running[str(g)] = np.asarray(run[0])
        bar.update()
    per_start = np.stack(per_start)  # [gains, B]
    rho = float(np.max(np.abs(np.linalg.eigvals(np.asarray(W, np.float64)))))
    mean = per_start.mean(axis=1)
    return {
        "lambda_1": mean,
        "lambda_1_per_start": per_start,
        "spectral_radius_W": rho,
        "crossing": crossing(gains, mean),
        "running": running,
    }


def plot(result: dict):
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    gains = np.asarray(result["config"]["gains"])
    fine = np.linspace(gains.min(), gains.max(), 300)
    ax.plot(fine, [mean_field_exponent(g) for g in fine], "k-", lw=1, label="mean field")
    for i, (size, r) in enumerate(result["sizes"].items()):
        label = f"N = {size} (crossing g = {fmt(r['crossing'])})"
        ax.plot(gains, r["lambda_1"], "o-", ms=3, color=f"C{i}", label=label)
    ax.axhline(0, color="gray", lw=0.8)
    ax.axvline(1, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="gain g", ylabel=r"$\lambda_1$ (nats / step)", xscale="log")
    ax.set_title(r"$h_t = \tanh(g W h_{t-1})$: largest Lyapunov exponent")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    big = result["sizes"][str(max(int(s) for s in result["sizes"]))]
    for g, run in big["running"].items():
        ax2.plot(np.arange(1, len(run) + 1), run, label=f"g = {g}")
    ax2.axhline(0, color="gray", lw=0.8)
    ax2.set(xlabel="steps averaged", ylabel=r"running estimate of $\lambda_1$", xscale="log")
    ax2.set_title(f"convergence at N = {max(int(s) for s in result['sizes'])} (first start)")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    key = seed_everything(args.seed)
    config = {
        "sizes": [128, 512, 2048],
        "gains": [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1, 1.2, 1.5, 2.0, 3.0],
        "batch": 4,
        "warmup": 300,
        "measured": 600,
        "convergence_gains": [0.9, 1.0, 1.5, 3.0],
        "tolerance": 0.05,
    }
    if args.quick:
        config |= {"sizes": [64, 256], "batch": 2, "warmup": 100, "measured": 200}
        config |= {"gains": [0.5, 0.8, 0.9, 1.0, 1.1, 1.5, 3.0]}
    bar = progress(desc=NAME, unit="net", total=len(config["sizes"]) * len(config["gains"]))
    sizes = {}
    for i, size in enumerate(config["sizes"]):
        sizes[str(size)] = exponents_for(
            jax.random.fold_in(key, i), size, config["gains"], config, bar
        )
    bar.close()
    largest = sizes[str(max(config["sizes"]))]
    mf = {"gains": config["gains"], "lambda": [mean_field_exponent(g) for g in config["gains"]]}
    g_star, tol = largest["crossing"], config["tolerance"]
    rows = [
        anchor(
            f"tanh RNN, N = {max(config['sizes'])}: g where lambda_1 crosses 0",
            f"1 (within {tol})",
            g_star,
            bool(np.isfinite(g_star) and abs(g_star - 1) <= tol),
        ),
    ]
    data = {"sizes": sizes, "mean_field": mf, "anchors": rows}
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    sizes = result["sizes"]
    gains = result["config"]["gains"]
    cross = ", ".join(f"{fmt(r['crossing'])} (N = {s})" for s, r in sizes.items())
    n_big = str(max(int(s) for s in sizes))
    big = sizes[n_big]
    at = {g: big["lambda_1"][i] for i, g in enumerate(gains)}
    near = ", ".join(f"{fmt(at[g])} at {g}" for g in gains if 0.98 <= g <= 1.1)
    n_small = str(min(int(s) for s in sizes))
    flat = max(g for g, v in zip(gains, sizes[n_small]["lambda_1"], strict=True) if v < 1e-3)
    finding = (
        f"lambda_1(g) first turns from negative to non-negative at g = {cross}. At N = {n_big} "
        f"it follows log(g rho(W)) below the edge ({fmt(at.get(0.5, float('nan')))} at g = 0.5; "
        f"log(0.5 rho(W)) = {fmt(np.log(0.5 * big['spectral_radius_W']))}, rho(W) = "
        f"{fmt(big['spectral_radius_W'])}), stays near 0 just above it ({near}; mean field "
        f"{fmt(mean_field_exponent(1.02))} to {fmt(mean_field_exponent(1.1))} there), and "
        f"grows beyond: {fmt(at.get(2.0, float('nan')))} at g = 2 "
        f"(mean field {fmt(mean_field_exponent(2.0))}), {fmt(at.get(3.0, float('nan')))} at "
        f"g = 3 (mean field {fmt(mean_field_exponent(3.0))}). At N = {n_small}, lambda_1 stays "
        f"below 1e-3 up to g = {flat} (the larger networks are chaotic there): a small "
        "network settles on cycles and fixed points that the large-N theory does not have."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

"""Gradient flow in the xLSTM cells at initialisation, beside the LSTM's.

The headline experiment's measurement (`vanishing_gradients.py`, its
setting (a) and (b), the same draws of weights, inputs and readout) for
the sLSTM and the mLSTM (Beck et al. 2024), four heads each, next to the
tanh RNN, the LSTM (forget-gate bias 1, the xLSTM cells' default too) and
the GRU: ||dL/d carry_{T-k}|| against k for a loss on the last output,
relative to k = 0, averaged over a batch, for several seeds (band: the
range of the seeds' own curves). Inputs x ~ N(0, 1) in (a) and
N(0, 0.1^2) in (b); hidden 64, 64 inputs, float64.

Beside the curves, the leading Lyapunov exponent lambda_1 of each cell's
input-driven map (`lstmjax.dynamics.lyapunov_spectrum`, the QR recursion,
k = 1) on the same trajectories of setting (a), and the per-step slope of
the log gradient norm over the same window (`lyapunov_gradients.py`'s
`measure`): the rate at which a gradient shrinks per step, in nats.

The xLSTM cells carry their memories scaled by exp(-m) (m the log-space
stabiliser, itself part of the carry), so the gradient here is the one
backpropagation through the stabilised step sees; the JSON also holds the
norm of each carry field's gradient alone.

    python experiments/xlstm_gradient_flow.py [--quick] [--out DIR]
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
    notes_panel,
    parse_args,
    progress,
    publish,
    seed_everything,
    wrap_lines,
)
from lyapunov_gradients import measure
from matplotlib.patches import Patch
from vanishing_gradients import (
    ANCHOR_K,
    NAMES,
    SHORT,
    STYLE,
    decay_per_step,
    draw_curve,
    init_curves,
    init_draw,
    make_cell,
)

NAME = "xlstm_gradient_flow"

CELLS = ("rnn", "lstm", "gru", "slstm", "mlstm")  # labels of vanishing_gradients.CELLS
XLSTM = ("slstm", "mlstm")
CAROUSEL_RATIO = 1e6  # the headline's LSTM anchor: at k = 100, at least 1e6 x the tanh RNN
TOLERANCE = 0.02  # nats per step: lyapunov_gradients' agreement of gradient slope and lambda_1
# nats per step: the mLSTM's lambda_1 with weak inputs against log sigmoid(forget bias). The
# gate's pre-activation still spreads by 0.1 around the bias, which lowers E[log f] by about
# 0.5 * 0.01 * sigmoid'(1) = 0.001; the finite window adds its own few thousandths.
REST_TOLERANCE = 0.005


def lyapunov(key, config: dict, input_scale: float, bar) -> dict:
    """lambda_1 and the gradient slope of every cell and seed, on `init_curves`' draws."""
    out = {}
    for label in CELLS:
        cell = make_cell(label, config["hidden"], jnp.float64)
        rows = []
        for seed in range(config["seeds"]):
            kp, xs, u, target = init_draw(jax.random.fold_in(key, seed), config, input_scale)
            r = measure(cell, cell.init(kp, config["inputs"]), xs, u, target, config)
            rows.append({k: r[k] for k in ("lambda_1", "grad_slope", "grad_slope_stderr")})
            bar.update()
        out[label] = {k: [row[k] for row in rows] for k in rows[0]}
        out[label]["lambda_1_mean"] = float(np.mean(out[label]["lambda_1"]))
        out[label]["grad_slope_mean"] = float(np.mean(out[label]["grad_slope"]))
    return out


def forget_rate_at_rest(forget_bias: float) -> float:
    """log sigmoid(b): the mLSTM memory's per-step decay, in nats, when the inputs vanish.

    With x -> 0 every head's forget gate is sigmoid(b) at every step and no
    gate reads the carry, so each memory is multiplied by exactly that per
    step: lambda_1 = log sigmoid(b) (the stabiliser rescales the carried
    memory by exp(m_{t-1} - m_t), a bounded factor that does not change
    the exponent).
    """
    return float(-np.log1p(np.exp(-forget_bias)))


def anchors_of(curves: dict, lyap: dict, lyap_weak: dict, forget_bias: float) -> list[dict]:
    k, rnn = ANCHOR_K, curves["rnn"]["relative"][ANCHOR_K]
    rows = []
    for label in XLSTM:
        ratio = curves[label]["relative"][k] / rnn
        rows.append(
            anchor(
                f"{SHORT[label]} / tanh RNN: relative grad norm at k = {k}",
                f">= {CAROUSEL_RATIO:.0e} (keeps the LSTM's carousel: the headline's LSTM anchor)",
                ratio,
                ratio >= CAROUSEL_RATIO,
            )
        )
    for label in XLSTM:
        gap = max(
            abs(s - lam)
            for s, lam in zip(lyap[label]["grad_slope"], lyap[label]["lambda_1"], strict=True)
        )
        rows.append(
            anchor(
                f"{SHORT[label]}: largest |gradient slope - lambda_1| over the seeds (nats/step)",
                f"0 (within {TOLERANCE}; lambda_1 = {fmt(lyap[label]['lambda_1_mean'])})",
                gap,
                gap <= TOLERANCE,
            )
        )
    rest = forget_rate_at_rest(forget_bias)
    lam = lyap_weak["mlstm"]["lambda_1_mean"]
    rows.append(
        anchor(
            "mLSTM, weak inputs: lambda_1 - log sigmoid(forget bias) (nats/step)",
            f"0 (within {REST_TOLERANCE}; the memory decays at its forget gate's rate, "
            f"log sigmoid({forget_bias:g}) = {rest:.4f})",
            lam - rest,
            abs(lam - rest) <= REST_TOLERANCE,
        )
    )
    return rows


def headline(result: dict) -> str:
    """The figure's take-home message, with this run's numbers."""
    c, lyap, k = result["curves"], result["lyapunov"], ANCHOR_K
    rate, weak = result["decay_per_step"], result["lyapunov_weak_inputs"]
    rel = {n: c[n]["relative"][k] for n in CELLS}
    ratio = {n: rel[n] / rel["rnn"] for n in CELLS}

    def nearest(n):  # of the classic cells, the one whose per-step factor is closest
        return min(("lstm", "gru", "rnn"), key=lambda o: abs(np.log(rate[o] / rate[n])))

    lead = "At initialisation the gradient is multiplied per step by " + "; ".join(
        f"{fmt(rate[n])} in the {SHORT[n]}, closest to the {SHORT[nearest(n)]}'s "
        f"{fmt(rate[nearest(n)])}"
        for n in XLSTM
    )
    lead += f" (tanh RNN {fmt(rate['rnn'])}, LSTM {fmt(rate['lstm'])}, GRU {fmt(rate['gru'])})."
    lines = [
        lead,
        f"(a) {k} steps back the "
        + ", the ".join(f"{SHORT[n]} keeps {fmt(ratio[n])}x" for n in ("slstm", "mlstm", "lstm"))
        + f" the tanh RNN's share of the gradient (per-step factors: geometric means over "
        f"k <= {k}).",
        "(c, d) Leading Lyapunov exponents (nats/step, mean of the seeds): "
        + ", ".join(f"{SHORT[n]} {fmt(lyap[n]['lambda_1_mean'])}" for n in CELLS)
        + f"; with weak inputs the mLSTM's is {fmt(weak['mlstm']['lambda_1_mean'])}"
        + f", its forget gate's log sigmoid(1) = {fmt(result['forget_rate_at_rest'])}.",
    ]
    return wrap_lines(lines, 150)


def notes(result: dict) -> str:
    """How to read the figure."""
    cfg = result["config"]
    S, T = cfg["seeds"], cfg["steps"]
    return "\n".join(
        [
            f"Each line: the gradient of a loss on the last output with respect to the carry k "
            f"steps earlier, relative to k = 0, averaged over {S} seeds x {cfg['batch']} "
            f"sequences (H = {cfg['hidden']}, T = {T}, float64); shaded: the range of the seeds' "
            "curves. The weights, inputs and readouts are the headline figure's, so its LSTM, "
            "GRU and tanh RNN curves are these. Dotted grey: k = 100, where the anchors are read.",
            f"(c) lambda_1 from the QR recursion over steps {cfg['warmup']}..{T - cfg['warmup']} "
            "against the slope of the mean log gradient norm over the same window, one point per "
            "seed: on the diagonal the gradient shrinks at the rate of the most expanding "
            "direction of the dynamics. (d) lambda_1 in both settings: no gate of the mLSTM "
            "reads its carry, so its memory decays by its forget gate alone, exactly "
            "log sigmoid(1) per step once the inputs are weak; the sLSTM's and the LSTM's "
            "memories also pass through h and the recurrent weights.",
            "The xLSTM cells carry c (mLSTM: C) and n scaled by exp(-m), the log-space stabiliser "
            "m being part of the carry: the gradient here is the one that backpropagation through "
            "the stabilised step sees. The mLSTM's next step does not read its output h, so its "
            "k = 0 value is dL/dh_T alone and from k = 1 on the gradient lives in C, n and m: "
            "its curve starts above 1.",
        ]
    )


def plot(result: dict):
    fig, axes = plt.subplot_mosaic(
        [["legend", "legend"], ["a", "b"], ["c", "d"], ["notes", "notes"]],
        figsize=(14, 13),
        height_ratios=[0.07, 1, 0.9, 0.2],
        layout="constrained",
    )
    for key, setting, title in (
        ("a", "curves", "(a) At initialisation, inputs x ~ N(0, 1) (the headline's setting)"),
        ("b", "curves_weak_inputs", "(b) At initialisation, weak inputs x ~ N(0, 0.1²)"),
    ):
        ax = axes[key]
        for label, c in result[setting].items():
            draw_curve(ax, label, c)
        ax.set(title=title, xlabel="k, steps back from the last output")
        ax.set_ylabel(r"$\|\partial L / \partial\,\mathrm{carry}_{T-k}\|$ / its value at k = 0")
        ax.grid(alpha=0.3, which="major")
    axes["a"].axvline(ANCHOR_K, color="gray", lw=0.9, ls=":")
    ax = axes["c"]
    values = []
    for label, r in result["lyapunov"].items():
        ax.plot(r["lambda_1"], r["grad_slope"], "o", color=STYLE[label][0], ms=6,
                label=SHORT[label])  # fmt: skip
        values += r["lambda_1"] + r["grad_slope"]
    lo, hi = min(values) - 0.03, max(values) + 0.03
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label=r"slope = $\lambda_1$")
    ax.set(
        title="(c) Setting (a): gradient slope against the leading Lyapunov exponent, per seed",
        xlabel=r"$\lambda_1$ (nats per step, dynamics.lyapunov_spectrum)",
        ylabel="slope of the log gradient norm (nats per step)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes["d"]
    width, lows = 0.38, []
    x = np.arange(len(CELLS))
    handles = []
    for shift, setting, hatch, name in (
        (-width / 2, "lyapunov", "", "(a) x ~ N(0, 1)"),
        (width / 2, "lyapunov_weak_inputs", "//", "(b) x ~ N(0, 0.1²)"),
    ):
        lam = [result[setting][n]["lambda_1_mean"] for n in CELLS]
        lows += lam
        ax.bar(x + shift, lam, width, color=[STYLE[n][0] for n in CELLS], hatch=hatch,
               edgecolor="white")  # fmt: skip
        handles.append(Patch(facecolor="0.55", hatch=hatch, edgecolor="white", label=name))
    rest = "log sigmoid(1): the mLSTM's forget gate at rest"
    handles.append(ax.axhline(result["forget_rate_at_rest"], color="C9", ls="--", lw=1, label=rest))
    ax.set_xticks(x, [SHORT[n] for n in CELLS])
    ax.set(
        title=r"(d) Leading Lyapunov exponent $\lambda_1$ (mean of the seeds)",
        ylabel=r"$\lambda_1$ (nats per step; 0 = no decay)",
        ylim=(min(lows) - 0.15, 0),
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(handles=handles, fontsize=8, loc="lower center", ncols=3)
    handles = [
        plt.Line2D([], [], color=STYLE[n][0], ls=STYLE[n][1], lw=STYLE[n][2], label=NAMES[n])
        for n in CELLS
    ]
    axes["legend"].axis("off")
    axes["legend"].legend(handles=handles, loc="center", ncols=3, fontsize=9.5, frameon=False)
    fig.suptitle(headline(result), fontsize=11.5, weight="bold")
    notes_panel(axes["notes"], notes(result))
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()
    key = seed_everything(args.seed)
    # The headline's setting (a) and (b): same sizes, same keys, so the same draws.
    config = {"hidden": 64, "inputs": 64, "steps": 150, "batch": 32, "seeds": 5, "warmup": 25}
    if args.quick:  # T stays >= 100 (the anchors are read at k = 100)
        config |= {"steps": 110, "batch": 8, "seeds": 2, "warmup": 5}
    config |= {"cells": list(CELLS), "tolerance": TOLERANCE, "forget_bias": 1.0}
    k_init, k_weak, _, _ = jax.random.split(key, 4)  # as vanishing_gradients.main splits it
    S = config["seeds"]
    with progress(desc=f"{NAME}: gradients", unit="net", total=4 * S * len(CELLS)) as bar:
        curves = init_curves(k_init, config, 1.0, bar, labels=CELLS)
        weak = init_curves(k_weak, config, 0.1, bar, labels=CELLS)
        lyap = lyapunov(k_init, config, 1.0, bar)
        lyap_weak = lyapunov(k_weak, config, 0.1, bar)
    data = {
        "curves": curves,
        "curves_weak_inputs": weak,
        "decay_per_step": {label: decay_per_step(c) for label, c in curves.items()},
        "decay_per_step_weak_inputs": {label: decay_per_step(c) for label, c in weak.items()},
        "lyapunov": lyap,
        "lyapunov_weak_inputs": lyap_weak,
        "forget_rate_at_rest": forget_rate_at_rest(config["forget_bias"]),
        "anchors": anchors_of(curves, lyap, lyap_weak, config["forget_bias"]),
    }
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    c, k, rate = result["curves"], ANCHOR_K, result["decay_per_step"]
    finding = (
        f"At initialisation ({result['config']['seeds']} seeds pooled, the headline's draws) the "
        f"gradient k = {k} steps back, relative to k = 0: "
        + ", ".join(f"{SHORT[n]} {fmt(c[n]['relative'][k])} (per step {fmt(rate[n])})" for n in c)
        + ". Leading Lyapunov exponent against the gradient slope (nats/step, means of the seeds), "
        "inputs N(0, 1): "
        + ", ".join(
            f"{SHORT[n]} {fmt(r['lambda_1_mean'])} vs {fmt(r['grad_slope_mean'])}"
            for n, r in result["lyapunov"].items()
        )
        + "; weak inputs: "
        + ", ".join(
            f"{SHORT[n]} {fmt(r['lambda_1_mean'])} vs {fmt(r['grad_slope_mean'])}"
            for n, r in result["lyapunov_weak_inputs"].items()
        )
        + f" (log sigmoid(1) = {fmt(result['forget_rate_at_rest'])})."
    )
    finding += "\n\n" + notes(result).replace("\n", "\n\n")
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

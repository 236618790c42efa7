"""The dynamical_system figure: RK4's order, rollout errors, training loss, examples."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

COLORS = {"rnn": "C3", "lstm": "C0", "true": "k"}
COORDINATES = {"pendulum": ("angle", "angular velocity"), "lorenz": ("x", "y", "z")}


def plot_order(ax, order: dict) -> None:
    dt = np.asarray(order["dt"])
    ax.loglog(
        dt,
        order["oscillator_error"],
        "o-",
        label=f"oscillator (slope {order['oscillator_slope']:.2f})",
    )
    ax.loglog(
        dt,
        order["pendulum_error"],
        "s-",
        label=f"damped pendulum (slope {order['pendulum_slope']:.2f})",
    )
    guide = order["oscillator_error"][0] * (dt / dt[0]) ** 4
    ax.loglog(dt, guide, "k:", label=r"$\propto dt^4$")
    ax.set(title=f"RK4 global error at t = {order['t_end']:g}", xlabel="dt", ylabel="error")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels would overlap
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def plot_rollout(ax, system: str, per_cell: dict, divergence: dict | None) -> None:
    for label, r in per_cell.items():
        name = f"{label} (one-step MSE {r['one_step_mse']:.2g}; "
        name += f"persistence {r['persistence_mse']:.2g})"
        ax.semilogy(r["time"], np.exp(r["mean_log_error"]), color=COLORS[label], label=name)
        if "growth" in r and np.isfinite(r["growth"]["rate"]):
            g = r["growth"]
            t = np.asarray(r["time"])
            i0 = int(np.searchsorted(t, g["t_start"]))
            fit = np.exp(r["mean_log_error"][i0] + g["rate"] * (t - g["t_start"]))
            band = (t >= g["t_start"]) & (t <= g["t_stop"])
            ax.semilogy(
                t[band],
                fit[band],
                color=COLORS[label],
                ls="--",
                lw=1,
                label=f"{label} fit: e^({g['rate']:.2f} t)",
            )
    if divergence is not None:
        ax.semilogy(
            divergence["time"],
            np.exp(divergence["mean_log_error"]),
            color="k",
            lw=1,
            label=f"true trajectories 1e-6 apart: e^({divergence['rate']:.2f} t)",
        )
    ax.set(
        title=f"{system}: closed-loop rollout error",
        xlabel="time after warm-up",
        ylabel="geometric-mean distance to the true state",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def plot_example(ax, system: str, r: dict, dt: float) -> None:
    true, pred = np.asarray(r["example_true"]), np.asarray(r["example_rollout"])
    t = dt * np.arange(1, len(true) + 1)
    for d, name in enumerate(COORDINATES[system]):
        ax.plot(t, true[:, d], color=f"C{d}", lw=1.5, label=f"{name}: true")
        ax.plot(t, pred[:, d], color=f"C{d}", lw=1, ls="--", label=f"{name}: LSTM rollout")
    ax.set(title=f"{system}: one test trajectory, closed-loop LSTM", xlabel="time after warm-up")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=len(COORDINATES[system]))


def plot(result: dict):
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5), layout="constrained")
    plot_order(axes[0, 0], result["rk4_order"])
    sysres, cfg = result["systems"], result["config"]
    plot_rollout(axes[0, 1], "pendulum", sysres["pendulum"], None)
    plot_rollout(axes[0, 2], "lorenz", sysres["lorenz"], result["true_divergence"])
    ax = axes[1, 0]
    for system, ls in (("pendulum", "-"), ("lorenz", "--")):
        for label, r in sysres[system].items():
            ax.semilogy(
                r["curve"]["step"],
                r["curve"]["loss"],
                color=COLORS[label],
                ls=ls,
                label=f"{label}, {system}",
            )
    ax.set(title="Training loss (standardised increment MSE)", xlabel="step", ylabel="MSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    plot_example(axes[1, 1], "pendulum", sysres["pendulum"]["lstm"], cfg["pendulum_dt"])
    plot_example(axes[1, 2], "lorenz", sysres["lorenz"]["lstm"], cfg["lorenz_dt"])
    return fig

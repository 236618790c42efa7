"""Dynamical systems: RK4's order of accuracy, then RNN and LSTM one-step predictors.

Part 1. The classical Runge-Kutta integrator (`lstmjax.tasks.rk4`) is run to
a fixed time with step sizes dt, dt/2, ...; its global error falls like dt^4.
Two references: the harmonic oscillator y'' = -y (exact solution cos t,
-sin t) and the damped pendulum (against a run with a 16 times smaller step).
The fitted slope of log error against log dt is the order.

Part 2. A tanh RNN and an LSTM (each with a linear readout) read a
trajectory of a damped pendulum or of the Lorenz system, one state per
step, and predict the increment to the next state (both standardised with
training-set statistics). Measured on fresh test trajectories:

  * the one-step error (teacher forcing: the true state is read at every
    step) against the persistence baseline (next state = this state);
  * the rollout error: after a warm-up on true states, the model runs
    closed-loop, reading its own predictions, and the distance to the true
    trajectory is recorded against time. For the chaotic Lorenz system a
    small error grows like e^{lambda t}, lambda ~ 0.906 its largest Lyapunov
    exponent; the growth rate of the geometric-mean error over the growth
    phase is fitted, beside the same fit for two true trajectories started
    1e-6 apart (the integrator's own answer).

The integrator's side is in `_dynamics.py`, the predictors in
`_dynamics_predictors.py`, the figure in `_dynamics_plot.py`.

    python experiments/dynamical_system.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
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
from _dynamics import rk4_order, system_data, true_divergence
from _dynamics_plot import plot
from _dynamics_predictors import CELLS, evaluate, scaling_of, train_predictor

NAME = "dynamical_system"

LORENZ_LYAPUNOV = 0.906  # largest Lyapunov exponent of Lorenz (10, 28, 8/3)


def anchors_of(order: dict, systems: dict, divergence: dict) -> list[dict]:
    """Rows for RK4's order, the one-step ratios and the Lorenz growth rates."""
    rows = []
    for name in ("oscillator", "pendulum"):
        s = order[f"{name}_slope"]
        rows.append(
            anchor(f"RK4 order ({name}): log-log slope", "4 (within 3.5..4.5)", s, 3.5 <= s <= 4.5)
        )
    for system, per_cell in systems.items():
        for label, r in per_cell.items():
            rows.append(
                anchor(
                    f"{label} on {system}: persistence MSE / one-step MSE",
                    ">= 10",
                    r["ratio"],
                    r["ratio"] >= 10,
                )
            )
    lam = LORENZ_LYAPUNOV
    rate = divergence["rate"]
    rows.append(
        anchor(
            "Lorenz: growth rate of true trajectories 1e-6 apart",
            f"{lam} (within 0.7..1.1)",
            rate,
            0.7 <= rate <= 1.1,
        )
    )
    for label, r in systems.get("lorenz", {}).items():
        rate = r["growth"]["rate"]
        rows.append(
            anchor(
                f"{label}: growth rate of the Lorenz rollout error",
                f"about {lam}: within 0.5..1.5",
                rate,
                0.5 <= rate <= 1.5,
            )
        )
    return rows


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()  # RK4's order needs float64 (its error reaches 1e-12); training asks for float32
    key = seed_everything(args.seed)
    config = {
        "t_end": 10.0,
        "rk4_steps": [25, 50, 100, 200, 400, 800],
        "pendulum_dt": 0.1,
        "lorenz_dt": 0.02,
        "hidden": 64,
        "batch": 32,
        "train_length": 128,  # rollouts run longer still: the carry must stay in range
        "steps": 2000,
        "log_every": 100,
        "learning_rate": 3e-3,
        "test_batch": 64,
        "warmup": 16,
        "pendulum_rollout_steps": 300,
        "lorenz_rollout_steps": 600,
        "rollout_steps": 600,
        "perturbation": 1e-6,
        "growth_from": 10.0,
        "saturation": 3.0,
    }
    if args.quick:
        config |= {"steps": 400, "log_every": 50, "hidden": 32, "test_batch": 16}
        config |= {"train_length": 64}
        config |= {"pendulum_rollout_steps": 100, "lorenz_rollout_steps": 300, "rollout_steps": 600}
    k_data, k_train, k_test, k_div = jax.random.split(key, 4)
    order = rk4_order(config)
    divergence = true_divergence(k_div, config)
    bar = progress(desc=f"{NAME}: training", unit="update", total=2 * len(CELLS) * config["steps"])
    systems = {}
    for system in ("pendulum", "lorenz"):
        scale = scaling_of(system_data(system, k_data, 256, config["train_length"], config))
        systems[system] = {}
        for label in CELLS:
            bar.set_postfix_str(f"{system} {label}")
            params, fns, curve = train_predictor(k_train, system, label, config, scale, bar)
            systems[system][label] = {
                "curve": curve,
                **evaluate(system, fns, params, k_test, config),
            }
    bar.close()
    data = {
        "rk4_order": order,
        "true_divergence": divergence,
        "lyapunov_reference": LORENZ_LYAPUNOV,
        "systems": systems,
        "anchors": anchors_of(order, systems, divergence),
    }
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    o, s = result["rk4_order"], result["systems"]
    ratios = "; ".join(
        f"{label} on {system} {fmt(r['ratio'])}x"
        for system, c in s.items()
        for label, r in c.items()
    )
    rates = ", ".join(f"{label} {fmt(r['growth']['rate'])}" for label, r in s["lorenz"].items())
    finding = (
        f"RK4 error slopes {fmt(o['oscillator_slope'])} (oscillator) and "
        f"{fmt(o['pendulum_slope'])} (pendulum); one-step error below persistence by {ratios}; "
        f"Lorenz rollout error grows at rate {rates} per unit time (true trajectories 1e-6 "
        f"apart: {fmt(result['true_divergence']['rate'])}; Lyapunov exponent "
        f"{result['lyapunov_reference']})."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

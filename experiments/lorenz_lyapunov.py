"""The Lyapunov spectrum of the Lorenz system, and of RNN and LSTM predictors run in closed loop.

Part 1. The Lorenz system (sigma = 10, rho = 28, beta = 8/3) integrated with
the project's RK4 (`lstmjax.tasks.rk4_step`, dt = 0.02) is a map of R^3;
`lstmjax.dynamics.lyapunov_spectrum` of that map (wrapped by
`dynamics.map_cell`), divided by dt, gives the exponents per unit time.
Reference values: lambda = (0.906, 0, -14.57) (e.g. Sprott, "Chaos and
Time-Series Analysis", 2003), and exactly sum = -(sigma + 1 + beta) =
-13.667, the divergence of the vector field; the RK4 map's Jacobian
determinant differs from exp(-13.667 dt) by the method's truncation error,
about 2e-3 per unit time at dt = 0.02 (1e-4 at dt = 0.01, the dt^4 order),
hence the sum's tolerance 0.005.

Part 2. The one-step predictors of `dynamical_system.py` (a tanh RNN and an
LSTM with a linear readout, trained with the same seed and configuration)
are run in closed loop, each reading its own prediction: a map of the
state (carry, x) of size H + 3 (RNN) or 2H + 3 (LSTM). After a warm-up on
a true trajectory, its leading exponents (per unit time) are compared with
the true ones: a predictor that has learned the attractor's dynamics has
lambda_1 near 0.906 and lambda_2 near 0 (the direction along the flow).
The per-start exponents are in the JSON: a closed loop that falls from a
chaotic transient onto a stable cycle has lambda_1 < 0 from that start.

    python experiments/lorenz_lyapunov.py [--quick] [--out DIR]
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from _common import Report, anchor, enable_x64, fmt, parse_args, progress, publish, seed_everything
from _dynamics import system_data
from _dynamics_predictors import CELLS, Model, predictor, scaling_of, train_predictor

import lstmjax as lj
from lstmjax import dynamics, tasks

NAME = "lorenz_lyapunov"
REFERENCE = (0.906, 0.0, -14.572)
SUM = -(tasks.LORENZ_SIGMA + 1 + tasks.LORENZ_BETA)


class Loop(NamedTuple):
    model: Any  # the predictor's carry
    state: jax.Array  # [..., 3], the state it predicted last


@dataclasses.dataclass(frozen=True)
class ClosedLoop(lj.Cell):
    """The predictor reading its own output, as a `Cell` (input ignored).

    Its params are the trained predictor's (`step_fn`'s first argument), of the
    structure `init` gives: what `lyapunov_spectrum` checks them against.
    """

    step_fn: Any  # `(params, carry, state [B, 3]) -> (carry, next state)`
    cell: lj.Cell  # the predictor's cell
    readout: lj.Layer  # the predictor's readout, [H] -> [3]
    output_size: int = 3

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    @property
    def name(self) -> str:
        return f"closed-loop {self.cell.name}"

    def init(self, key, input_size):
        """The predictor's params at initialisation (the loop's own input is ignored)."""
        k_cell, k_out = jax.random.split(key)
        return Model(self.cell.init(k_cell, 3), self.readout.init(k_out, self.cell.output_size))

    def initial_carry(self, batch_shape=()):
        shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
        return Loop(self.cell.initial_carry(shape), jnp.zeros(shape + (3,)))

    def project(self, params, x):
        return x

    def recur(self, params, carry: Loop, px):
        model, state = self.step_fn(params, carry.model, carry.state)
        return Loop(model, state), state

    def output(self, carry: Loop):
        return carry.state


def true_spectrum(key, config: dict) -> dict:
    dt = config["lorenz_dt"]
    f = tasks.lorenz()
    lorenz_map = dynamics.map_cell(lambda y: tasks.rk4_step(f, 0.0, y, dt), 3, name="lorenz")
    y0 = tasks.lorenz_trajectories(key, config["true_batch"], 2, dt=dt, dtype=jnp.float64)[:, 0]
    xs = jnp.zeros((config["true_batch"], config["true_steps"], 1))
    spec = dynamics.lyapunov_spectrum(lorenz_map, (), xs, y0, warmup=config["warmup"])
    path = tasks.rk4(f, y0[0], dt, config["path_steps"])
    return {
        "exponents": np.asarray(spec.mean) / dt,
        "per_start": np.asarray(spec.exponents) / dt,
        "sum": float(np.sum(spec.mean) / dt),
        "running": np.asarray(spec.running[0]) / dt,
        "path": np.asarray(path),
    }


def model_spectrum(label: str, params, scale, key, config: dict) -> dict:
    """Spectrum of the trained predictor in closed loop, from warm-ups on true trajectories."""
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    scale = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), scale)
    cell = CELLS[label](config["hidden"])
    readout = lj.dense(3)
    apply_fn, step_fn = predictor(cell, readout, scale)
    warm, B = config["model_warmup"], config["model_batch"]
    states = system_data("lorenz", key, B, warm, config).astype(jnp.float64)
    _, carry = apply_fn(params, states[:, : warm - 1])
    start = Loop(carry, states[:, warm - 1])
    loop = ClosedLoop(step_fn, cell, readout)
    xs = jnp.zeros((B, config["model_steps"], 1))
    spec = dynamics.lyapunov_spectrum(
        loop, params, xs, start, k=config["k"], warmup=config["warmup"]
    )

    def body(c, _):
        c, y = loop.recur(params, c, None)
        return c, y

    one = jax.tree_util.tree_map(lambda a: a[0], start)
    _, path = jax.lax.scan(body, one, None, length=config["path_steps"])
    dt = config["lorenz_dt"]
    return {
        "exponents": np.asarray(spec.mean) / dt,
        "per_start": np.asarray(spec.exponents) / dt,
        "running": np.asarray(spec.running[0]) / dt,
        "path": np.asarray(path),
    }


def plot(result: dict):
    fig = plt.figure(figsize=(14, 4.6))
    ax = fig.add_subplot(1, 3, 1)
    labels = ["true (RK4)"] + list(result["models"])
    spectra = [result["true"]["exponents"]] + [m["exponents"] for m in result["models"].values()]
    width = 0.8 / len(spectra)
    k = max(len(s) for s in spectra)
    for i, (label, s) in enumerate(zip(labels, spectra, strict=True)):
        ax.bar(np.arange(len(s)) + (i - (len(spectra) - 1) / 2) * width, s, width, label=label)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(range(k), [f"$\\lambda_{i + 1}$" for i in range(k)])
    ax.set(ylabel="exponent (1 / time unit)", yscale="symlog")
    ax.set_title("Lyapunov spectra (symlog scale)")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 3, 2)
    run = np.asarray(result["true"]["running"])
    t = result["config"]["lorenz_dt"] * np.arange(1, len(run) + 1)
    for i, ref in enumerate(REFERENCE):
        ax2.plot(t, run[:, i], color=f"C{i}", label=f"$\\lambda_{i + 1}$ (ref {ref})")
        ax2.axhline(ref, color=f"C{i}", ls=":", lw=0.8)
    for j, (label, m) in enumerate(result["models"].items()):
        r = np.asarray(m["running"])
        tt = result["config"]["lorenz_dt"] * np.arange(1, len(r) + 1)
        ax2.plot(
            tt, r[:, 0], color="k", ls=["--", "-."][j % 2], lw=1, label=f"{label} $\\lambda_1$"
        )
    ax2.set(xlabel="time averaged", ylabel="running estimate", xscale="log", yscale="symlog")
    ax2.set_title("convergence (first start)")
    ax2.legend(fontsize=7)
    ax3 = fig.add_subplot(1, 3, 3)
    true_path = np.asarray(result["true"]["path"])
    ax3.plot(true_path[:, 0], true_path[:, 2], "k-", lw=0.4, label="true")
    for j, (label, m) in enumerate(result["models"].items()):
        p = np.asarray(m["path"])
        ax3.plot(p[:, 0], p[:, 2], lw=0.4, color=f"C{j + 1}", label=f"{label}, closed loop")
    ax3.set(xlabel="x", ylabel="z")
    ax3.set_title("attractors (x, z)")
    ax3.legend(fontsize=8)
    fig.tight_layout()
    return fig


def anchors_of(true: dict, models: dict, config: dict) -> list[dict]:
    lam = true["exponents"]
    tol = config["tolerances"]
    rows = [
        anchor(
            "Lorenz (RK4): lambda_1",
            f"0.906 (within {tol[0]})",
            lam[0],
            abs(lam[0] - 0.906) <= tol[0],
        ),
        anchor("Lorenz (RK4): lambda_2", f"0 (within {tol[1]})", lam[1], abs(lam[1]) <= tol[1]),
        anchor(
            "Lorenz (RK4): lambda_3",
            f"-14.57 (within {tol[2]})",
            lam[2],
            abs(lam[2] + 14.572) <= tol[2],
        ),
        anchor(
            "Lorenz (RK4): sum of exponents",
            f"-(sigma + 1 + beta) = {SUM:.4f} (within {tol[3]})",
            true["sum"],
            abs(true["sum"] - SUM) <= tol[3],
        ),
    ]
    for label, m in models.items():
        l1 = m["exponents"][0]
        rows.append(
            anchor(
                f"{label} predictor, closed loop: lambda_1",
                "about 0.906: within 0.5..1.5",
                l1,
                0.5 <= l1 <= 1.5,
            )
        )
    return rows


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()  # the spectrum in float64; the predictors train in float32 as in dynamical_system
    key = seed_everything(args.seed)
    config = {
        # dynamical_system.py's training configuration (same seed: the same predictors)
        "lorenz_dt": 0.02,
        "hidden": 64,
        "batch": 32,
        "train_length": 128,
        "steps": 2000,
        "log_every": 100,
        "learning_rate": 3e-3,
        # the spectra
        "true_batch": 4,
        "true_steps": 50_000,
        "warmup": 500,
        "model_batch": 4,
        "model_warmup": 16,
        "model_steps": 10_000,
        "k": 4,
        "path_steps": 2500,
        "tolerances": [0.03, 0.01, 0.1, 0.005],
    }
    if args.quick:
        config |= {"steps": 150, "hidden": 16, "train_length": 64, "true_steps": 5000}
        config |= {"model_steps": 1000, "model_batch": 2, "warmup": 200, "path_steps": 500}
        config |= {"tolerances": [0.1, 0.05, 0.3, 0.005]}
    k_data, k_train, k_test, _ = jax.random.split(key, 4)  # as in dynamical_system.main
    true = true_spectrum(k_test, config)
    bar = progress(desc=f"{NAME}: training", unit="update", total=len(CELLS) * config["steps"])
    scale = scaling_of(system_data("lorenz", k_data, 256, config["train_length"], config))
    models = {}
    for label in CELLS:
        params, _, curve = train_predictor(k_train, "lorenz", label, config, scale, bar)
        models[label] = {"final_loss": curve["loss"][-1]}
        models[label] |= model_spectrum(label, params, scale, k_test, config)
    bar.close()
    data = {"reference": REFERENCE, "true": true, "models": models}
    data["anchors"] = anchors_of(true, models, config)
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    t = result["true"]
    spec = lambda s: "(" + ", ".join(fmt(v) for v in s) + ")"  # noqa: E731
    models = "; ".join(
        f"{label} {spec(m['exponents'])} (lambda_1 per start "
        f"{spec(np.asarray(m['per_start'])[:, 0])})"
        for label, m in result["models"].items()
    )
    finding = (
        f"Lorenz with RK4 (dt = {result['config']['lorenz_dt']}): spectrum {spec(t['exponents'])}, "
        f"sum {t['sum']:.4f} (reference (0.906, 0, -14.57), sum {SUM:.4f}). Closed-loop "
        f"predictors, leading {result['config']['k']} exponents per unit time: {models}. "
        "A start with lambda_1 < 0 is one whose closed loop left its chaotic transient for a "
        "stable cycle: that predictor's long-run attractor is not the Lorenz attractor."
    )
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

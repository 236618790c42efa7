"""Opening the black box: the fixed points of an RNN and a GRU trained on the 3-bit flip-flop.

Sussillo & Barak (2013): a network trained to hold the sign of the last
pulse on each of 3 channels (`lstmjax.tasks.flip_flop`) stores its 8
memories as 8 stable fixed points of its input-free dynamics, with saddle
points between them whose unstable directions lead from one memory to
another. Here a tanh RNN and a GRU (hidden 64, linear readout) are trained
with Adam; `lstmjax.dynamics.fixed_points` then minimises q(h) = 1/2
||F(h, 0) - h||^2 with L-BFGS from states visited on test sequences (plus
Gaussian noise, std 0.05 for half the starts and 0.5 for the rest), keeps
q < 1e-10, merges duplicates and classifies each point by the eigenvalues
of its Jacobian. The readout of each stable point says which memory
(corner of {-1, +1}^3) it holds. Figure: visited states, trajectories and
fixed points in the top three principal components.

    python experiments/flipflop_fixed_points.py [--quick] [--out DIR]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _common import Report, anchor, enable_x64, parse_args, progress, publish, seed_everything

import lstmjax as lj
from lstmjax import dynamics, losses, tasks, train

NAME = "flipflop_fixed_points"
CELLS = {"rnn": lj.rnn, "gru": lj.gru}


class Model(NamedTuple):
    cell: Any
    readout: lj.DenseParams  # [H, 3]


def train_model(key, label: str, config: dict, bar):
    """Train cell + linear readout on the flip-flop (float32); returns float64 params and MSE."""
    H, B, T = config["hidden"], config["batch"], config["length"]
    cell, readout = CELLS[label](H), lj.dense(tasks.FLIPFLOP_BITS)
    kc, kr, ks, kd, kt = jax.random.split(key, 5)
    params = Model(cell.init(kc, tasks.FLIPFLOP_BITS), readout.init(kr, H))

    def apply_fn(p: Model, xs):
        ys, _ = lj.unroll(cell, p.cell, xs)
        return readout.apply(p.readout, ys)

    schedule = optax.cosine_decay_schedule(config["learning_rate"], config["steps"])
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    step = train.make_train_step(apply_fn, losses.mse, optimizer)
    state = train.init_state(params, optimizer, key=ks)
    batch = jax.jit(tasks.flip_flop, static_argnums=(1, 2))
    for i in range(config["steps"]):
        state, _ = step(state, batch(jax.random.fold_in(kd, i), B, T))
        bar.update()
    xs, ys = batch(kt, config["test_batch"], T)
    pred = apply_fn(state.params, xs)
    mse = float(losses.mse(pred, ys))
    accuracy = float(jnp.mean(jnp.sign(pred[:, 1:]) == ys[:, 1:]))
    p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), state.params)
    return cell, readout, p64, xs.astype(jnp.float64), {"test_mse": mse, "accuracy": accuracy}


def analyse(key, cell, readout, params: Model, xs, config: dict) -> dict:
    """Fixed points from visited states; PCA of the visited states."""
    hs, _ = lj.unroll(cell, params.cell, xs)  # [B, T, H], float64
    visited = np.asarray(hs).reshape(-1, cell.hidden_size)
    pick = jax.random.choice(key, visited.shape[0], (config["starts"],), replace=False)
    # Half the starts near visited states, half farther out (saddles lie between memories).
    scales = jnp.repeat(jnp.asarray(config["start_noise"]), config["starts"] // 2)
    noise = scales[:, None] * jax.random.normal(
        jax.random.fold_in(key, 1), (config["starts"], cell.hidden_size), jnp.float64
    )
    starts = jnp.asarray(visited)[pick] + noise
    fp = dynamics.fixed_points(
        cell, params.cell, jnp.zeros(tasks.FLIPFLOP_BITS), starts=starts, tol=config["tol"]
    )
    mean = visited.mean(axis=0)
    _, _, vt = np.linalg.svd(visited - mean, full_matrices=False)
    pcs = vt[:3]  # [3, H]
    project = lambda a: (np.asarray(a) - mean) @ pcs.T  # noqa: E731
    outputs = np.asarray(readout.apply(params.readout, jnp.asarray(fp.points)))
    stable = [i for i, kind in enumerate(fp.kind) if kind == "stable"]
    corners = {tuple(int(s) for s in np.sign(outputs[i])) for i in stable}
    # Unstable directions of the saddles (real part of the leading eigenvector).
    jac = jax.vmap(jax.jacrev(lambda h: cell.step(params.cell, h, jnp.zeros(3))[0]))
    arms = []
    for i, kind in enumerate(fp.kind):
        if kind == "saddle":
            J = np.asarray(jac(jnp.asarray(fp.points[i : i + 1]))[0])
            vals, vecs = np.linalg.eig(J)
            v = np.real(vecs[:, np.argmax(np.abs(vals))])
            arms.append(project(fp.points[i] + config["arm"] * np.stack([-v, v])))
    return {
        "kind": list(fp.kind),
        "speed": fp.speed,
        "max_modulus": np.abs(fp.eigenvalues[:, 0]) if len(fp.kind) else np.zeros(0),
        "unstable_modes": [int(np.sum(np.abs(e) > 1)) for e in fp.eigenvalues],
        "n_stable": len(stable),
        "n_saddle": sum(kind == "saddle" for kind in fp.kind),
        "n_unstable": sum(kind == "unstable" for kind in fp.kind),
        "stable_corners": sorted(corners),
        "candidates_converged": int(np.sum(fp.candidate_speed < config["tol"])),
        "points_pc": project(fp.points),
        "saddle_arms_pc": arms,
        "trajectories_pc": [project(np.asarray(hs[b])) for b in range(config["plot_trajectories"])],
        "explained_variance": float(
            np.sum(np.var((visited - mean) @ pcs.T, axis=0)) / np.sum(np.var(visited, axis=0))
        ),
    }


def plot(result: dict):
    fig = plt.figure(figsize=(13, 6))
    for j, (label, r) in enumerate(result["models"].items()):
        ax = fig.add_subplot(1, 2, j + 1, projection="3d")
        for path in r["trajectories_pc"]:
            p = np.asarray(path)
            ax.plot(p[:, 0], p[:, 1], p[:, 2], color="0.6", lw=0.5)
        for arm in r["saddle_arms_pc"]:
            a = np.asarray(arm)
            ax.plot(a[:, 0], a[:, 1], a[:, 2], color="C3", lw=1.2)
        pts = np.asarray(r["points_pc"]).reshape(-1, 3)
        kinds = np.asarray(r["kind"])
        style = {"stable": ("k", "o", 40), "saddle": ("C3", "x", 40), "unstable": ("C1", "^", 30)}
        for kind, (color, marker, size) in style.items():
            sel = kinds == kind
            if np.any(sel):
                ax.scatter(*pts[sel].T, c=color, marker=marker, s=size, label=f"{sel.sum()} {kind}")
        ax.set(xlabel="PC 1", ylabel="PC 2", zlabel="PC 3")
        m = r["metrics"]
        ax.set_title(
            f"{label}: test MSE {m['test_mse']:.2g}, sign accuracy {m['accuracy']:.3f}\n"
            f"top 3 PCs: {100 * r['explained_variance']:.0f}% of the variance",
            fontsize=9,
        )
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("3-bit flip-flop: fixed points of F(h, x = 0), with trajectories", fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()  # the fixed-point search in float64; training asks for float32
    key = seed_everything(args.seed)
    config = {
        "hidden": 64,
        "batch": 64,
        "length": 100,
        "steps": 1500,
        "learning_rate": 1e-2,
        "test_batch": 64,
        "starts": 512,
        "start_noise": [0.05, 0.5],
        "tol": 1e-10,
        "arm": 0.5,
        "plot_trajectories": 6,
    }
    if args.quick:
        config |= {"hidden": 16, "steps": 200, "batch": 32, "length": 60, "starts": 48}
    bar = progress(desc=f"{NAME}: training", unit="update", total=len(CELLS) * config["steps"])
    models = {}
    for i, label in enumerate(CELLS):
        k_train, k_fp = jax.random.split(jax.random.fold_in(key, i))
        cell, readout, params, xs, metrics = train_model(k_train, label, config, bar)
        models[label] = {"metrics": metrics, **analyse(k_fp, cell, readout, params, xs, config)}
    bar.close()
    rows = []
    for label, r in models.items():
        rows.append(
            anchor(
                f"{label}: stable fixed points",
                "8 (2^3 memories)",
                r["n_stable"],
                r["n_stable"] == 8,
            )
        )
        rows.append(
            anchor(
                f"{label}: distinct memories (readout sign corners) of the stable points",
                "8",
                len(r["stable_corners"]),
                len(r["stable_corners"]) == 8,
            )
        )
        rows.append(anchor(f"{label}: saddle points", ">= 1", r["n_saddle"], r["n_saddle"] >= 1))
    data = {"models": models, "anchors": rows}
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    parts = []
    for label, r in result["models"].items():
        m = r["metrics"]
        modes = sorted(
            {u for u, k in zip(r["unstable_modes"], r["kind"], strict=True) if k == "saddle"}
        )
        parts.append(
            f"{label} (test MSE {m['test_mse']:.2g}, sign accuracy {m['accuracy']:.3f}): "
            f"{r['n_stable']} stable points holding {len(r['stable_corners'])} distinct memories, "
            f"{r['n_saddle']} saddles (unstable modes {modes}), {r['n_unstable']} unstable; "
            f"{r['candidates_converged']} of {result['config']['starts']} starts converged"
        )
    return Report([(result["figures"][0], "; ".join(parts) + ".")], result["anchors"])


if __name__ == "__main__":
    main()

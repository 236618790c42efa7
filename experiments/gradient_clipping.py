"""Gradient clipping: the "wall" of Pascanu et al. (2013) and a tanh RNN with and without it.

Part 1, the one-unit network x_t = w sigmoid(x_{t-1}) + b, x_0 = 0.5, run
for 50 steps, loss L(w, b) = (x_50 - 0.7)^2. Where (w, b) crosses into the
region with two stable fixed points, x_50 jumps from one to the other: the
loss surface has a cliff (a "wall") along which the gradient is huge.
Gradient descent from the same start is drawn on the surface twice: plain,
and with the gradient rescaled to norm `clip` when it is larger.

Part 2, a tanh RNN trained by SGD with momentum on the temporal order task
(`lstmjax.tasks.temporal_order`), once without and once with global-norm
clipping (`optax.clip_by_global_norm` chained before the optimizer), over several seeds (vmapped):
loss curves, gradient norms with their spikes, and the success rate (test
accuracy >= `success_accuracy`).

    python experiments/gradient_clipping.py [--quick] [--out DIR]
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
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
from lstmjax import losses, tasks, train

NAME = "gradient_clipping"


# ---------------------------------------------------------------------------
# Part 1: the one-unit error surface
# ---------------------------------------------------------------------------


def unit_loss(theta, x0: float, target: float, steps: int):
    """(x_steps - target)^2 for x_t = w sigmoid(x_{t-1}) + b; theta = [w, b]."""
    w, b = theta[0], theta[1]
    x, _ = jax.lax.scan(lambda x, _: (w * jax.nn.sigmoid(x) + b, None), x0, None, length=steps)
    return jnp.square(x - target)


@partial(jax.jit, static_argnums=(1, 2, 3))
def surface(thetas, x0: float, target: float, steps: int):
    """Loss and gradient norm at every point of `thetas: [N, 2]`."""
    loss, grad = jax.vmap(jax.value_and_grad(unit_loss), (0, None, None, None))(
        thetas, x0, target, steps
    )
    return loss, jnp.linalg.norm(grad, axis=-1)


@partial(jax.jit, static_argnums=(1, 2, 3, 6))
def descent(theta0, x0: float, target: float, steps: int, lr, clip, iterations: int):
    """Gradient descent on `unit_loss`; gradients longer than `clip` are rescaled to it.

    Returns the path `[iterations + 1, 2]`, the loss `[iterations + 1]` and the
    gradient norm `[iterations]` (before clipping) at each point.
    """
    value_and_grad = jax.value_and_grad(unit_loss)

    def body(theta, _):
        loss, g = value_and_grad(theta, x0, target, steps)
        norm = jnp.linalg.norm(g)
        g = g * jnp.minimum(1.0, clip / norm)
        return theta - lr * g, (theta, loss, norm)

    last, (path, loss, norms) = jax.lax.scan(body, theta0, None, length=iterations)
    path = jnp.concatenate([path, last[None]])
    loss = jnp.concatenate([loss, unit_loss(last, x0, target, steps)[None]])
    return path, loss, norms


def wall_experiment(config: dict) -> dict:
    c = config["surface"]
    w = np.linspace(*c["w_range"], c["grid"])
    b = np.linspace(*c["b_range"], c["grid"])
    ww, bb = np.meshgrid(w, b)
    thetas = jnp.asarray(np.stack([ww.ravel(), bb.ravel()], axis=1))
    loss, gnorm = surface(thetas, c["x0"], c["target"], c["steps"])
    paths = {}
    for label, clip in (("unclipped", np.inf), ("clipped", c["clip"])):
        path, path_loss, norms = descent(
            jnp.asarray(c["start"], jnp.float64),
            c["x0"],
            c["target"],
            c["steps"],
            c["lr"],
            clip,
            c["iterations"],
        )
        path = np.asarray(path)
        paths[label] = {
            "w": path[:, 0],
            "b": path[:, 1],
            "loss": path_loss,
            "grad_norm": norms,
            "largest_step": float(np.max(np.linalg.norm(np.diff(path, axis=0), axis=1))),
            "final_loss": float(path_loss[-1]),
        }
    return {
        "w": w,
        "b": b,
        "loss": np.asarray(loss).reshape(ww.shape),
        "grad_norm": np.asarray(gnorm).reshape(ww.shape),
        "paths": paths,
    }


# ---------------------------------------------------------------------------
# Part 2: a tanh RNN on the temporal order task, with and without clipping
# ---------------------------------------------------------------------------


class Model(NamedTuple):
    rnn: lj.RNNParams
    readout: lj.DenseParams  # [H, 4] logits of the four classes


def order_model(config: dict):
    """Cell, readout, `init(key) -> Model` and `apply(params, xs) -> logits [B, 4]`."""
    H = config["hidden"]
    recurrent = jax.nn.initializers.orthogonal(scale=config["recurrent_scale"])
    cell = lj.rnn(H, recurrent_init=recurrent)
    readout = lj.dense(tasks.ORDER_NUM_CLASSES)

    def init(key) -> Model:
        kc, kr = jax.random.split(key)
        return Model(cell.init(kc, tasks.ORDER_VOCAB_SIZE), readout.init(kr, H))

    def apply(params: Model, xs):
        ys, _ = lj.unroll(cell, params.rnn, xs)
        return readout.apply(params.readout, ys[:, -1])

    return init, apply


def train_seeds(key, config: dict, clip_norm, bar) -> dict:
    """Train one model per seed (vmapped together); metrics of every step."""
    init, apply = order_model(config)
    optimizer = optax.sgd(config["lr"], momentum=config["momentum"])
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    step = train.make_train_step(apply, losses.cross_entropy, optimizer)
    B, T = config["batch"], config["length"]
    seeds = config["seeds"]
    keys = jax.random.split(key, seeds)
    test_key = jax.random.fold_in(key, seeds)  # differs from every training stream
    states = jax.vmap(lambda k: train.init_state(init(k), optimizer, key=k))(keys)

    def one_step(state, data_key):
        xs, ys = tasks.temporal_order(jax.random.fold_in(data_key, state.step), B, T)
        state, metrics = step(state, (xs, ys))
        return state, (metrics["loss"], metrics["grad_norm"])

    @jax.jit
    def chunk(states):  # `chunk_steps` updates of every seed
        def body(s, _):
            return jax.vmap(one_step)(s, keys)

        return jax.lax.scan(body, states, None, length=config["chunk_steps"])

    loss, gnorm = [], []
    for _ in range(config["train_steps"] // config["chunk_steps"]):
        states, (l, g) = chunk(states)
        loss.append(np.asarray(l))
        gnorm.append(np.asarray(g))
        bar.update(config["chunk_steps"])
    test_xs, test_ys = tasks.temporal_order(test_key, 2000, T)
    acc = jax.vmap(lambda p: losses.accuracy(apply(p, test_xs), test_ys))(states.params)
    acc = np.asarray(acc)
    return {
        "loss": np.concatenate(loss).T,  # [seeds, steps]
        "grad_norm": np.concatenate(gnorm).T,
        "test_accuracy": acc,
        "success_rate": float(np.mean(acc >= config["success_accuracy"])),
    }


def spikes(grad_norm: np.ndarray) -> dict:
    """Largest gradient norm relative to the run's median, per seed."""
    ratio = grad_norm.max(axis=1) / np.median(grad_norm, axis=1)
    return {"max_over_median": ratio, "max": grad_norm.max(axis=1)}


# ---------------------------------------------------------------------------
# Figures, anchors, report
# ---------------------------------------------------------------------------


def plot_wall(wall: dict, c: dict):
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.6), layout="constrained")
    ww, bb = np.meshgrid(wall["w"], wall["b"])
    for ax, key, label in (
        (axes[0], "loss", r"$\log_{10}$ loss $(x_{50} - 0.7)^2$"),
        (axes[1], "grad_norm", r"$\log_{10}\|\nabla L\|$"),
    ):
        field = np.log10(np.asarray(wall[key]) + 1e-12)
        mesh = ax.pcolormesh(ww, bb, field, cmap="viridis", shading="auto")
        fig.colorbar(mesh, ax=ax, label=label)
        for name, color, lw in (("clipped", "white", 3.0), ("unclipped", "red", 1.0)):
            p = wall["paths"][name]
            ax.plot(p["w"], p["b"], color=color, lw=lw, label=f"{name} gradient descent")
        ax.plot(*c["start"], "o", color="orange", ms=8, label="start")
        ax.set(
            xlim=c["w_range"],
            ylim=c["b_range"],
            xlabel="w (recurrent weight)",
            ylabel="b (bias)",
        )
    un = wall["paths"]["unclipped"]
    axes[0].set_title(
        rf"loss of $x_t = w\,\sigma(x_{{t-1}}) + b$ after {c['steps']} steps: the wall"
        f"\n(unclipped GD hits it and is thrown out to (w, b) = "
        f"({un['w'][-1]:.3g}, {un['b'][-1]:.3g}))",
        fontsize=10,
    )
    axes[1].set_title(
        f"gradient norm on the same grid\n(clipped path: norm rescaled to <= {c['clip']}, "
        f"learning rate {c['lr']})",
        fontsize=10,
    )
    axes[0].legend(loc="lower left", fontsize=8)
    return fig


def windows(x: np.ndarray, size: int, reduce) -> tuple[np.ndarray, np.ndarray]:
    """`reduce` over consecutive windows of `size` steps of `x: [S]`; (window ends, values)."""
    n = len(x) // size
    values = reduce(np.asarray(x)[: n * size].reshape(n, size), axis=1)
    return (np.arange(n) + 1) * size - 1, values


def plot_training(runs: dict, config: dict):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    colors = {"unclipped": "C3", "clipped": "C0"}
    size = max(1, config["train_steps"] // 150)  # about 150 points per curve
    for label, r in runs.items():
        for s in range(r["loss"].shape[0]):
            kw = {"label": label} if s == 0 else {}
            axes[0].plot(*windows(r["loss"][s], size, np.mean), color=colors[label], lw=1, **kw)
            steps, peaks = windows(r["grad_norm"][s], size, np.max)
            axes[1].semilogy(steps, peaks, color=colors[label], alpha=0.7, lw=1, **kw)
    axes[0].axhline(tasks.ORDER_BASELINE_CROSS_ENTROPY, color="k", ls=":", label="baseline ln 4")
    axes[0].set(
        title=f"tanh RNN, temporal order T = {config['length']}: training loss",
        xlabel="step",
        ylabel=f"cross-entropy (nats), mean over {size} steps",
    )
    axes[1].set(
        title="gradient norm before clipping (one line per seed)",
        xlabel="step",
        ylabel=f"largest global norm in {size} steps",
    )
    if "clipped" in runs:
        axes[1].axhline(config["clip_norm"], color="C0", ls="--", lw=1, label="clip threshold")
    labels = list(runs)
    rates = [runs[k]["success_rate"] for k in labels]
    axes[2].bar(labels, rates, color=[colors[k] for k in labels])
    for i, k in enumerate(labels):
        axes[2].scatter(
            np.full(len(runs[k]["test_accuracy"]), i),
            runs[k]["test_accuracy"],
            color="k",
            zorder=3,
            s=12,
            label="test accuracy per seed" if i == 0 else None,
        )
    axes[2].axhline(config["success_accuracy"], color="gray", ls=":", lw=1)
    axes[2].set(
        title=f"success (test accuracy >= {config['success_accuracy']}) over "
        f"{config['seeds']} seeds",
        ylabel="success rate / accuracy",
        ylim=(0, 1.05),
    )
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return fig


def anchors_of(wall: dict, runs: dict) -> list[dict]:
    un, cl = wall["paths"]["unclipped"], wall["paths"]["clipped"]
    spike = float(np.max(un["grad_norm"]) / un["grad_norm"][0])
    step_ratio = un["largest_step"] / cl["largest_step"]
    return [
        anchor(
            "one-unit RNN: gradient at the wall / gradient at the start",
            ">= 100 (a wall of high curvature)",
            spike,
            spike >= 100,
        ),
        anchor(
            "one-unit RNN: largest unclipped step / largest clipped step",
            ">= 10 (clipping keeps the step bounded)",
            step_ratio,
            step_ratio >= 10,
        ),
        anchor(
            "tanh RNN, temporal order: success rate clipped - unclipped",
            ">= 0 (clipping does not hurt, usually helps)",
            runs["clipped"]["success_rate"] - runs["unclipped"]["success_rate"],
            runs["clipped"]["success_rate"] >= runs["unclipped"]["success_rate"],
        ),
    ]


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()  # the wall is steep: float64 for part 1 (part 2 trains in float32)
    key = seed_everything(args.seed)
    surface_cfg = {
        "x0": 0.5,
        "target": 0.7,
        "steps": 50,
        "w_range": [2.0, 12.0],
        "b_range": [-8.0, 1.0],
        "grid": 120 if args.quick else 300,
        "start": [7.5, -4.0],
        "lr": 0.01,
        "clip": 5.0,
        "iterations": 1000,
    }
    config = {
        "surface": surface_cfg,
        "hidden": 64,
        "recurrent_scale": 1.0,
        "length": 50,
        "batch": 32,
        "lr": 0.02,
        "momentum": 0.9,
        "clip_norm": 1.0,
        "seeds": 5,
        "train_steps": 3000,
        "chunk_steps": 100,
        "success_accuracy": 0.9,
    }
    if args.quick:
        config |= {"hidden": 32, "lr": 0.05, "length": 20, "seeds": 2}
        config |= {"train_steps": 100, "chunk_steps": 50}
    bar = progress(desc=f"{NAME}: training", unit="update", total=2 * config["train_steps"])
    wall = wall_experiment(config)
    k_train = jax.random.fold_in(key, 1)
    runs = {
        "unclipped": train_seeds(k_train, config, None, bar),
        "clipped": train_seeds(k_train, config, config["clip_norm"], bar),
    }
    bar.close()
    for r in runs.values():
        r["spikes"] = spikes(r["grad_norm"])
    data = {
        "wall": wall,
        "training": runs,
        "baseline_cross_entropy": tasks.ORDER_BASELINE_CROSS_ENTROPY,
        "anchors": anchors_of(wall, runs),
    }
    figures = {
        f"{NAME}_wall.png": lambda _: plot_wall(wall, surface_cfg),
        f"{NAME}_training.png": lambda _: plot_training(runs, config),
    }
    return publish(args, NAME, config, data, figures)


def report(result: dict) -> Report:
    un, cl = result["wall"]["paths"]["unclipped"], result["wall"]["paths"]["clipped"]
    tr = result["training"]
    wall = (
        f"On the one-unit surface the gradient reaches {fmt(max(un['grad_norm']))} at the wall; "
        f"the unclipped step there is {fmt(un['largest_step'])} long and gradient descent ends "
        f"far away at (w, b) = ({fmt(un['w'][-1])}, {fmt(un['b'][-1])}), loss "
        f"{fmt(un['final_loss'])}; clipped, no step exceeds {fmt(cl['largest_step'])} and it "
        f"ends in the nearby valley at ({fmt(cl['w'][-1])}, {fmt(cl['b'][-1])}), loss "
        f"{fmt(cl['final_loss'])}."
    )
    training = (
        f"tanh RNN on temporal order (T = {result['config']['length']}): success rate "
        f"{fmt(tr['unclipped']['success_rate'])} without clipping, "
        f"{fmt(tr['clipped']['success_rate'])} with it; largest gradient spike "
        f"{fmt(max(tr['unclipped']['spikes']['max_over_median']))} x the median norm unclipped."
    )
    figs = result["figures"]
    return Report([(figs[0], wall), (figs[1], training)], result["anchors"])


if __name__ == "__main__":
    main()

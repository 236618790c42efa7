"""Vanishing gradients: ||dL/d carry_{T-k}|| against k for RNN, LSTM and GRU.

The headline experiment. A loss on the last output is differentiated with
respect to the carry at every step (`lstmjax.diagnostics.carry_grad_norms`,
one backward pass), averaged over a batch, and divided by its value at
k = 0. Three settings:

  1. the anchors' setting, at initialisation: hidden 64, input 64, inputs
     x ~ N(0, 1), default initialisation (orthogonal recurrent weights,
     LeCun-normal input weights), loss = (last output . u - target)^2 with a
     fixed random readout u; float64;
  2. the same cells with weak inputs, x ~ N(0, 0.1^2): the decay rate
     depends on how hard the inputs drive the units into saturation;
  3. after training on the adding problem (Adam, clipped at norm 1): the
     training loss itself, on a fresh batch of the task.

Each setting is measured for several seeds (new weights, inputs and readout;
for setting 3 a new training run): a curve is the mean over every seed's
batch, relative to k = 0, and the figure's band is the range of the seeds'
own curves. For the LSTM the carry is (h, c) and the curve is the norm of
both together, sqrt(||dL/dh||^2 + ||dL/dc||^2); the JSON also holds h and c
alone. Two numbers explain the results that look like exceptions (see
`explain`): the spectral radius of each cell's step Jacobian at rest (carry
0, input 0), and the size of the layer-normalised LSTM's carry.

    python experiments/vanishing_gradients.py [--quick] [--out DIR]
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import Any, NamedTuple

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
    notes_panel,
    parse_args,
    progress,
    publish,
    seed_everything,
    wrap_lines,
)
from jax.flatten_util import ravel_pytree

import lstmjax as lj
from lstmjax import diagnostics, losses, tasks, train

NAME = "vanishing_gradients"

CELLS: dict[str, Callable[..., lj.Cell]] = {
    "rnn": lambda h, dtype: lj.rnn(h, dtype=dtype),
    "lstm": lambda h, dtype: lj.lstm(h, forget_bias=1.0, dtype=dtype),
    "lstm_forget_bias_0": lambda h, dtype: lj.lstm(h, forget_bias=0.0, dtype=dtype),
    "gru": lambda h, dtype: lj.gru(h, dtype=dtype),
    "gru_reset_before": lambda h, dtype: lj.gru(h, reset_after=False, dtype=dtype),
    "lstm_ln": lambda h, dtype: lj.lstm(h, layer_norm=True, dtype=dtype),
    # Leaky tanh units, alpha = dt / tau = 0.1: the Euler step's Jacobian is
    # (1 - alpha) I + alpha diag(act') W_h, close to I when alpha is small.
    "ctrnn": lambda h, dtype: lj.ctrnn(h, tau=10.0, dt=1.0, dtype=dtype),
    # The xLSTM cells (Beck et al. 2024), four heads as in the paper's blocks: not in the
    # headline figure (see HEADLINE); `xlstm_gradient_flow.py` draws them beside the LSTM.
    "slstm": lambda h, dtype: lj.slstm(h, num_heads=4, dtype=dtype),
    "mlstm": lambda h, dtype: lj.mlstm(h, num_heads=4, dtype=dtype),
}
# The cells of this experiment's figure (all of CELLS but the xLSTM ones).
HEADLINE = ("rnn", "lstm", "lstm_forget_bias_0", "gru", "gru_reset_before", "lstm_ln", "ctrnn")

# What the figure calls each cell (the JSON keeps the short labels above).
NAMES = {
    "rnn": "tanh RNN",
    "lstm": "LSTM, forget-gate bias 1 (default)",
    "lstm_forget_bias_0": "LSTM, forget-gate bias 0",
    "gru": "GRU (reset gate after W_h, default)",
    "gru_reset_before": "GRU, reset gate before W_h (Cho et al.)",
    "lstm_ln": "LSTM with layer norm",
    "ctrnn": "leaky tanh RNN (CT-RNN, dt/tau = 0.1)",
    "slstm": "sLSTM (4 heads, forget-gate bias 1)",
    "mlstm": "mLSTM (4 heads, forget-gate bias 1)",
}

STYLE = {  # color, line style, line width: the two GRUs differ in width so both show
    "rnn": ("C3", "-", 1.8),
    "lstm": ("C0", "-", 1.8),
    "lstm_forget_bias_0": ("C0", "--", 1.6),
    "gru": ("C2", "-", 3.2),
    "gru_reset_before": ("k", ":", 1.4),
    "lstm_ln": ("C1", "-", 1.6),
    "ctrnn": ("C4", "-.", 1.6),
    "slstm": ("#6a3d9a", "-", 1.8),
    "mlstm": ("C9", "-", 1.8),
}


@cache
def make_cell(label: str, hidden: int, dtype) -> lj.Cell:
    """One `Cell` object per configuration, so that jitted functions taking it as a
    static argument compile once (a new Cell holds new closures and hashes anew)."""
    return CELLS[label](hidden, dtype)


TRAINED = ("rnn", "lstm", "lstm_forget_bias_0", "gru")  # cells trained on the adding problem
ANCHOR_K = 100
RNN_BOUND = 1e-15  # the anchor: the tanh RNN's relative gradient at k = ANCHOR_K is below this


class Model(NamedTuple):
    cell: Any  # the cell's params
    readout: lj.DenseParams  # [H, 1]


def curve(norms: diagnostics.CarryGradNorms) -> dict:
    """Batch-mean ||dL/d carry_{T-1-k}|| for k = 0..T-1, raw and relative to k = 0."""
    out = {"grad_norm": np.asarray(norms.mean)[::-1]}  # index k = distance from the end
    if isinstance(norms.fields_mean, lj.LSTMCarry):
        out["grad_norm_h"] = np.asarray(norms.fields_mean.h)[::-1]
        out["grad_norm_c"] = np.asarray(norms.fields_mean.c)[::-1]
    out["relative"] = out["grad_norm"] / out["grad_norm"][0]
    out["distance"] = np.arange(len(out["grad_norm"]))
    return out


def pooled(per_seed: list[dict]) -> dict:
    """The seeds' curves pooled: batch means averaged over the seeds (equal batches).

    `relative` is the pooled norm over its k = 0 value; `relative_seeds`
    `[S, T]` holds each seed's own relative curve (the band of the figure;
    the pooled curve lies between their minimum and maximum, as a ratio of
    sums lies between the smallest and largest ratio).
    """
    out = {
        name: np.mean([c[name] for c in per_seed], axis=0)
        for name in ("grad_norm", "grad_norm_h", "grad_norm_c")
        if name in per_seed[0]
    }
    out["relative"] = out["grad_norm"] / out["grad_norm"][0]
    out["relative_seeds"] = np.stack([c["relative"] for c in per_seed])
    out["distance"] = per_seed[0]["distance"]
    return out


@partial(jax.jit, static_argnums=0)
def readout_norms(cell: lj.Cell, params, xs, w, b, target) -> diagnostics.CarryGradNorms:
    """Carry gradient norms of the loss (last output . w + b - target)^2, per example.

    xs: `[B, T, I]`; w: `[H]`; b: scalar; target: `[B]`. The arrays are
    arguments (not closed over) so that one compilation serves every call
    with the same shapes.
    """

    def loss_fn(ys):
        return jnp.square(ys[:, -1] @ w + b - target)

    return diagnostics.carry_grad_norms(cell, params, xs, loss_fn)


def cells_for(config: dict) -> list[str]:
    return list(HEADLINE) if config["all_cells"] else list(TRAINED)


def init_draw(key, config: dict, input_scale: float):
    """One seed's draw: parameter key, inputs `[B, T, I]`, readout `[H]` and targets `[B]`."""
    H, I, T, B = config["hidden"], config["inputs"], config["steps"], config["batch"]
    kp, kx, ku, ky = jax.random.split(key, 4)
    xs = input_scale * jax.random.normal(kx, (B, T, I), jnp.float64)
    u = jax.random.normal(ku, (H,), jnp.float64) / np.sqrt(H)
    target = jax.random.normal(ky, (B,), jnp.float64)
    return kp, xs, u, target


def init_curves(key, config: dict, input_scale: float, bar, labels=None) -> dict:
    """Curves at initialisation, inputs N(0, input_scale^2), for every cell and seed.

    `labels`: the cells (keys of CELLS); None means this experiment's (`cells_for`).
    """
    labels = cells_for(config) if labels is None else labels
    per_seed: dict[str, list[dict]] = {label: [] for label in labels}
    for seed in range(config["seeds"]):
        kp, xs, u, target = init_draw(jax.random.fold_in(key, seed), config, input_scale)
        for label in per_seed:
            cell = make_cell(label, config["hidden"], jnp.float64)
            params = cell.init(kp, config["inputs"])
            zero = jnp.zeros((), jnp.float64)
            per_seed[label].append(curve(readout_norms(cell, params, xs, u, zero, target)))
            bar.update()
    return {label: pooled(curves) for label, curves in per_seed.items()}


def train_adding(key, label: str, config: dict, bar) -> tuple[Model, dict]:
    """Train cell + linear readout on the adding problem, one run per seed, vmapped together.

    Returns the trained parameters (every leaf with a leading seed axis) and
    the history: per seed, the mean training loss of each `log_every` steps,
    and the MSE on a fresh test batch of 1000 sequences.
    """
    H, T, B, S = config["hidden"], config["steps"], config["train_batch"], config["seeds"]
    every = config["log_every"]
    if config["train_steps"] % every:
        raise ValueError(f"train_steps must be a multiple of log_every; got {config}.")
    cell, readout = make_cell(label, H, jnp.float32), lj.dense(1)

    def apply_fn(p: Model, xs):
        ys, _ = lj.unroll(cell, p.cell, xs)
        return readout.apply(p.readout, ys[:, -1])

    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(config["learning_rate"]))
    step = train.make_train_step(apply_fn, losses.mse, optimizer)

    def init(seed_key):
        kc, kr, ks = jax.random.split(seed_key, 3)
        return train.init_state(Model(cell.init(kc, 2), readout.init(kr, H)), optimizer, key=ks)

    keys = jax.random.split(key, S)
    data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    states = jax.vmap(init)(keys)

    def one_step(state, data_key):
        batch = tasks.adding_problem(jax.random.fold_in(data_key, state.step), B, T)
        state, metrics = step(state, batch)
        return state, metrics["loss"]

    @jax.jit
    def chunk(states):  # `every` updates of every seed; the mean loss of each seed
        states, loss = jax.lax.scan(
            lambda s, _: jax.vmap(one_step)(s, data_keys), states, None, length=every
        )
        return states, loss.mean(axis=0)

    history: dict[str, Any] = {"step": [], "loss_seeds": []}
    for done in range(every, config["train_steps"] + 1, every):
        states, loss = chunk(states)
        history["step"].append(done)
        history["loss_seeds"].append(np.asarray(loss))
        bar.update(every)
    history["loss_seeds"] = np.stack(history["loss_seeds"], axis=1)  # [S, chunks]
    history["loss"] = np.median(history["loss_seeds"], axis=0)
    test_xs, test_ys = tasks.adding_problem(jax.random.fold_in(key, S), 1000, T)
    test = jax.vmap(lambda p: losses.mse(apply_fn(p, test_xs), test_ys))(states.params)
    history["test_mse_seeds"] = np.asarray(test, np.float64)
    history["test_mse"] = float(np.median(history["test_mse_seeds"]))
    return states.params, history


def _member(leaf, seed: int):
    """One seed's parameter leaf, in float64."""
    return jnp.asarray(leaf[seed], jnp.float64)


def trained_curves(key, label: str, params: Model, config: dict) -> dict:
    """The curve of the adding-problem loss for each seed's trained params (in float64)."""
    cell = make_cell(label, config["hidden"], jnp.float64)
    per_seed = []
    for seed in range(config["seeds"]):
        p = jax.tree_util.tree_map(partial(_member, seed=seed), params)
        xs, ys = tasks.adding_problem(
            jax.random.fold_in(key, seed), config["batch"], config["steps"], dtype=jnp.float64
        )
        norms = readout_norms(cell, p.cell, xs, p.readout.w[:, 0], p.readout.b[0], ys[:, 0])
        per_seed.append(curve(norms))
    return pooled(per_seed)


def radius_at_rest(cell: lj.Cell, params, inputs: int) -> float:
    """Spectral radius of d carry_t / d carry_{t-1} at carry 0 and input 0 (float64).

    The rate at which a small perturbation of the carry (and so the gradient)
    shrinks per step while the inputs are too weak to move the cell from
    rest: for the tanh RNN W_h (orthogonal: 1), for the GRU about
    z I + (1 - z) r W_hn with both gates at sigmoid(0) = 1/2.
    """
    carry = cell.initial_carry((1,))
    flat, unravel = ravel_pytree(carry)
    x = jnp.zeros((1, inputs), jnp.float64)

    def step(v):
        new, _ = cell.step(params, unravel(v), x)
        return ravel_pytree(new)[0]

    jac = jax.jacfwd(step)(flat)
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(jac)))))


def layer_norm_check(key, config: dict) -> dict:
    """Why the layer-normalised LSTM's gradient grows (strong inputs, seed 0, float64).

    Layer norm rescales h_{t-1} W_h to unit spread whatever the size of h, so
    the recurrence acts on small changes of h with a gain of about 1 / rms(h)
    where the plain LSTM's is 1. The check: the same net with its recurrent LN
    gain set to rms(h) instead of 1. Returns the rms of h and c per step
    (index k = distance from the end), and the gradient at the far end of the
    sequence (relative to k = 0) with the gain 1 and with the gain rms(h).
    """
    cell = make_cell("lstm_ln", config["hidden"], jnp.float64)
    kp, xs, u, target = init_draw(jax.random.fold_in(key, 0), config, 1.0)
    params = cell.init(kp, config["inputs"])

    def body(carry, x):
        carry, _ = cell.step(params, carry, x)
        return carry, carry

    _, carries = jax.lax.scan(body, cell.initial_carry((xs.shape[0],)), jnp.swapaxes(xs, 0, 1))
    rms = {
        f: np.sqrt(np.mean(np.square(np.asarray(getattr(carries, f))), axis=(1, 2))) for f in "hc"
    }
    gain = float(np.median(rms["h"]))
    zero = jnp.zeros((), jnp.float64)
    far = {}
    for name, scale in (("gain_1", 1.0), ("gain_rms_h", gain)):
        p = params._replace(ln_gain_h=params.ln_gain_h * scale)
        far[name] = float(curve(readout_norms(cell, p, xs, u, zero, target))["relative"][-1])
    return {"rms_h": rms["h"][::-1], "rms_c": rms["c"][::-1], "median_rms_h": gain, "far_end": far}


def explain(key, config: dict) -> dict:
    """The numbers behind the two results that look like exceptions (seed 0, float64)."""
    out: dict[str, Any] = {"radius_at_rest": {}}
    kp, _, _, _ = init_draw(jax.random.fold_in(key, 0), config, 1.0)
    for label in cells_for(config):
        if label == "lstm_ln":
            continue  # layer norm of a zero vector: the Jacobian at rest is 1/sqrt(eps)
        cell = make_cell(label, config["hidden"], jnp.float64)
        params = cell.init(kp, config["inputs"])
        out["radius_at_rest"][label] = radius_at_rest(cell, params, config["inputs"])
    if "lstm_ln" in cells_for(config):
        out["lstm_ln"] = layer_norm_check(key, config)
    return out


def anchors_of(curves: dict) -> list[dict]:
    k = ANCHOR_K
    rnn, lstm, fb0 = (curves[n]["relative"][k] for n in ("rnn", "lstm", "lstm_forget_bias_0"))
    return [
        anchor(f"tanh RNN: relative grad norm at k = {k}", "< 1e-15", rnn, rnn < RNN_BOUND),
        anchor(f"LSTM (forget bias 1) / RNN at k = {k}", ">= 1e6", lstm / rnn, lstm / rnn >= 1e6),
        anchor(
            f"LSTM (forget bias 0) / RNN at k = {k}",
            "about 1: within 1e-3..1e3 (vanishes as fast as the RNN)",
            fb0 / rnn,
            1e-3 <= fb0 / rnn <= 1e3,
        ),
    ]


def decay_per_step(c: dict, k: int = ANCHOR_K) -> float:
    """Geometric-mean factor by which the gradient shrinks per step over k steps."""
    return float(c["relative"][k] ** (1.0 / k))


SHORT = {  # in sentences
    "rnn": "tanh RNN",
    "lstm": "LSTM",
    "lstm_forget_bias_0": "LSTM (forget bias 0)",
    "gru": "GRU",
    "gru_reset_before": "GRU (reset before)",
    "lstm_ln": "layer-norm LSTM",
    "ctrnn": "leaky RNN",
    "slstm": "sLSTM",
    "mlstm": "mLSTM",
}


def draw_curve(ax, label: str, c: dict, name=None) -> None:
    """One cell's pooled curve, with the range of its seeds' curves shaded."""
    color, ls, lw = STYLE[label]
    seeds = np.asarray(c["relative_seeds"])
    if len(seeds) > 1:
        ax.fill_between(c["distance"], seeds.min(0), seeds.max(0), color=color, alpha=0.13, lw=0)
    ax.semilogy(c["distance"], c["relative"], color=color, ls=ls, lw=lw, label=name)


def plot_curves(ax, curves: dict, title: str) -> None:
    for label, c in curves.items():
        draw_curve(ax, label, c)
    ax.set(title=title, xlabel="k, steps back from the last output")
    ax.set_ylabel(r"$\|\partial L / \partial\,\mathrm{carry}_{T-k}\|$ / its value at k = 0")
    ax.grid(alpha=0.3, which="major")


def coincide(curves: dict, a: str, b: str) -> float:
    """The largest factor between two cells' curves, over every k."""
    ratio = np.asarray(curves[a]["relative"]) / np.asarray(curves[b]["relative"])
    return float(np.exp(np.max(np.abs(np.log(ratio)))))


def headline(result: dict) -> str:
    """The figure's take-home message, with this run's numbers."""
    c, tr, k = result["curves"], result["curves_trained"], ANCHOR_K
    end = len(tr["rnn"]["relative"]) - 1
    gated = [n for n in tr if n != "rnn"]
    mse = {n: h["test_mse"] for n, h in result["training"].items()}
    baseline = result["adding_baseline_mse"]
    kept = min(tr[n]["relative"][end] for n in gated)
    low, high = min(mse[n] for n in gated), max(mse[n] for n in gated)
    lines = [
        "Gated cells carry the gradient across long distances; the plain tanh RNN loses it "
        "geometrically.",
        f"(a) {k} steps back, at initialisation, the tanh RNN keeps {fmt(c['rnn']['relative'][k])} "
        "of the gradient at the output; the LSTM with forget-gate bias 1 keeps "
        f"{fmt(c['lstm']['relative'][k])}.",
        f"(c, d) After training on the adding problem the gated cells pass {fmt(kept)} or more of "
        f"it back over all {end} steps and reach test MSE {fmt(low)} to {fmt(high)}; the tanh RNN "
        f"passes {fmt(tr['rnn']['relative'][end])} and ends at {fmt(mse['rnn'])} (predicting "
        f"the mean: {fmt(baseline)}).",
    ]
    return wrap_lines(lines, 150)


def notes(result: dict) -> str:
    """How to read the figure, and the two results that look like exceptions."""
    cfg, c, weak = result["config"], result["curves"], result["curves_weak_inputs"]
    S, T = cfg["seeds"], cfg["steps"]
    lines = [
        f"Each line: the gradient of a loss on the last output with respect to the carry k steps "
        f"earlier, relative to k = 0, averaged over {S} seeds x {cfg['batch']} sequences "
        f"(H = {cfg['hidden']}, T = {T}, float64: values far below 1e-16 are exact, not "
        f"rounding). Shaded: the range of the {S} seeds' own curves.",
        f"Dotted grey in (a): k = {ANCHOR_K}, where the anchors are read, and 1e-15, the tanh "
        "RNN's anchor bound.",
    ]
    if "gru_reset_before" in c:
        lines[-1] += (
            " The GRU's two variants coincide (within a factor "
            f"{coincide(c, 'gru', 'gru_reset_before'):.2f} in (a), "
            f"{coincide(weak, 'gru', 'gru_reset_before'):.2f} in (b)): the black dotted line "
            "lies on the green one."
        )
    ex = result["explain"]
    if "lstm_ln" in c:
        ln, check = c["lstm_ln"], ex["lstm_ln"]
        rms_h = check["median_rms_h"]
        lines.append(
            "(1) The layer-normalised LSTM's gradient grows backwards in time "
            f"(x{fmt(ln['relative'][-1])} at k = {T - 1}): layer norm rescales h W_h to unit "
            f"spread whatever the size of h (rms {rms_h:.2f} here), so a change of h moves the "
            f"gates about {1 / rms_h:.1f} times as much as in the plain LSTM, and each step "
            "slightly expands. Check: with its recurrent LN gain set to "
            f"{rms_h:.2f} instead of 1, the same net's gradient at k = {T - 1} is "
            f"{fmt(check['far_end']['gain_rms_h'])} of its k = 0 value instead of "
            f"{fmt(check['far_end']['gain_1'])} (seed 0)."
        )
    radius = ex["radius_at_rest"]
    lines.append(
        f"(2) With weak inputs (b) the tanh RNN keeps more gradient than the GRU (per step "
        f"{fmt(decay_per_step(weak['rnn']))} against {fmt(decay_per_step(weak['gru']))} over "
        f"k <= {ANCHOR_K}): near rest its step Jacobian is W_h, orthogonal (spectral radius "
        f"{fmt(radius['rnn'])}), while the GRU's gates sit at sigmoid(0) = 1/2 and it keeps only "
        f"part of its state each step (radius {fmt(radius['gru'])}) until training opens the "
        "memory (c). Strong inputs (a) saturate the RNN's tanh units instead."
    )
    return "\n".join(lines)


def plot(result: dict):
    cfg = result["config"]
    fig, axes = plt.subplot_mosaic(
        [["legend", "legend"], ["a", "b"], ["c", "d"], ["notes", "notes"]],
        figsize=(14, 14),
        height_ratios=[0.07, 1, 1, 0.3],
        layout="constrained",
    )
    S = cfg["seeds"]
    plot_curves(
        axes["a"],
        result["curves"],
        "(a) At initialisation, inputs x ~ N(0, 1) (the anchors' setting)",
    )
    a = axes["a"]
    refs = [
        a.axvline(
            ANCHOR_K, color="gray", lw=0.9, ls=":", label=f"k = {ANCHOR_K}: anchors read here"
        ),
        a.axhline(RNN_BOUND, color="gray", lw=0.9, ls=":", label="1e-15: tanh RNN's anchor bound"),
    ]
    a.legend(handles=refs, fontsize=8, loc="lower left")
    if "lstm_ln" in result["curves"]:
        ln = result["curves"]["lstm_ln"]["relative"]
        a.annotate("(1)", (len(ln) - 1, ln[-1]), xytext=(-28, 6), textcoords="offset points",
                   color=STYLE["lstm_ln"][0], fontsize=11, weight="bold")  # fmt: skip
    plot_curves(
        axes["b"], result["curves_weak_inputs"], "(b) At initialisation, weak inputs x ~ N(0, 0.1²)"
    )
    weak = result["curves_weak_inputs"]
    if "lstm_ln" in weak:
        ln = weak["lstm_ln"]["relative"]
        axes["b"].annotate("(1)", (len(ln) - 1, ln[-1]), xytext=(-28, 6),
                           textcoords="offset points", color=STYLE["lstm_ln"][0], fontsize=11,
                           weight="bold")  # fmt: skip
    for label in ("rnn", "gru"):
        y = weak[label]["relative"][ANCHOR_K]
        axes["b"].annotate("(2)", (ANCHOR_K, y), xytext=(6, 6), textcoords="offset points",
                           color=STYLE[label][0], fontsize=11, weight="bold")  # fmt: skip
    plot_curves(
        axes["c"],
        result["curves_trained"],
        f"(c) After {cfg['train_steps']} Adam steps on the adding problem (T = {cfg['steps']})",
    )
    ax = axes["d"]
    for label, h in result["training"].items():
        color, ls, lw = STYLE[label]
        seeds = np.asarray(h["loss_seeds"])
        tests = np.asarray(h["test_mse_seeds"])
        if len(seeds) > 1:
            ax.fill_between(h["step"], seeds.min(0), seeds.max(0), color=color, alpha=0.13, lw=0)
        span = f" ({fmt(tests.min())}-{fmt(tests.max())})" if len(tests) > 1 else ""
        ax.plot(h["step"], h["loss"], color=color, ls=ls, lw=min(lw, 2.0),
                label=f"{SHORT[label]}: {fmt(h['test_mse'])}{span}")  # fmt: skip
    ax.axhline(result["adding_baseline_mse"], color="k", ls=":", label="predict 1 (the mean): 1/6")
    ax.set(
        title=f"(d) Adding problem, T = {cfg['steps']}: training loss (median of the seeds)",
        xlabel="training step",
        ylabel=f"MSE, mean of each {cfg['log_every']} steps (log scale)",
        yscale="log",
    )
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, title=f"test MSE: median (range of {S} seeds)", title_fontsize=8)
    handles = [
        plt.Line2D([], [], color=STYLE[n][0], ls=STYLE[n][1], lw=STYLE[n][2], label=NAMES[n])
        for n in result["curves"]
    ]
    axes["legend"].axis("off")
    axes["legend"].legend(handles=handles, loc="center", ncols=4, fontsize=9.5, frameon=False)
    fig.suptitle(headline(result), fontsize=11.5, weight="bold")
    notes_panel(axes["notes"], notes(result))
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()
    key = seed_everything(args.seed)
    config = {"hidden": 64, "inputs": 64, "steps": 150, "batch": 32, "seeds": 5}
    config |= {"train_batch": 32, "train_steps": 3000, "learning_rate": 1e-3, "log_every": 20}
    config |= {"all_cells": True}
    if args.quick:  # T stays >= 100 (the anchors are read at k = 100)
        config |= {"steps": 110, "batch": 8, "train_batch": 16, "train_steps": 40, "log_every": 5}
        config |= {"all_cells": False, "seeds": 2}
    config |= {"loss": "(last output . u - target)^2, batch mean of per-example norms"}
    k_init, k_weak, k_train, k_eval = jax.random.split(key, 4)
    S, cells = config["seeds"], cells_for(config)
    with progress(
        desc=f"{NAME}: gradients at initialisation", unit="net", total=2 * S * len(cells)
    ) as bar:
        curves = init_curves(k_init, config, 1.0, bar)
        weak = init_curves(k_weak, config, 0.1, bar)
    training, trained = {}, {}
    for label in TRAINED:
        desc = f"{NAME}: training {label} ({S} seeds at once)"
        with progress(desc=desc, unit="update", total=config["train_steps"]) as bar:
            params, training[label] = train_adding(k_train, label, config, bar)
        trained[label] = trained_curves(k_eval, label, params, config)
    data = {
        "curves": curves,
        "curves_weak_inputs": weak,
        "curves_trained": trained,
        "training": training,
        "adding_baseline_mse": tasks.ADDING_BASELINE_MSE,
        "decay_per_step": {label: decay_per_step(c) for label, c in curves.items()},
        "explain": explain(k_init, config),
        "anchors": anchors_of(curves),
    }
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def report(result: dict) -> Report:
    c, k = result["curves"], ANCHOR_K
    rate = result["decay_per_step"]
    tr = result["training"]
    seeds = result["config"].get("seeds", 1)
    finding = (
        f"At initialisation ({seeds} seeds pooled) the gradient k = {k} steps back is "
        f"{fmt(c['rnn']['relative'][k])} "
        f"of its k = 0 value for the tanh RNN, {fmt(c['lstm']['relative'][k])} for the LSTM "
        f"(forget bias 1), {fmt(c['lstm_forget_bias_0']['relative'][k])} with forget bias 0, "
        f"{fmt(c['gru']['relative'][k])} for the GRU (per-step factors "
        f"{fmt(rate['rnn'])}, {fmt(rate['lstm'])}, {fmt(rate['lstm_forget_bias_0'])}, "
        f"{fmt(rate['gru'])})"
        + "".join(
            f"; {fmt(c[n]['relative'][k])} for the {n} (per-step {fmt(rate[n])})"
            for n in ("lstm_ln", "ctrnn")
            if n in c and n in rate
        )
        + "; after training on the adding problem the test MSE (median of the seeds) is "
        + ", ".join(f"{fmt(h['test_mse'])} ({label})" for label, h in tr.items())
        + f" (baseline {fmt(result['adding_baseline_mse'])})."
    )
    if "explain" in result:
        finding += "\n\n" + notes(result).replace("\n", "\n\n")
    return Report([(result["figures"][0], finding)], result["anchors"])


if __name__ == "__main__":
    main()

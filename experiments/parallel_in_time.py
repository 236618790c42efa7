"""Residual against iteration of the parallel-in-time solvers (DEER, quasi-DEER, ELK).

For each cell (tanh RNN, GRU, LSTM, minGRU, minLSTM) at initialisation and
after a short training on the 3-bit flip-flop task (`lstmjax.tasks.flip_flop`,
Sussillo & Barak 2013: the trained net holds 8 memories, so its dynamics are
multistable), and for a tanh RNN in its chaotic regime (recurrent gain 3 > 1),
the max residual max_t |h_t - f(h_{t-1}, x_t)| after k iterations of each
method from the zero guess, on one batch of the task's inputs. The papers'
qualitative claims: plain Newton converges in a few iterations for
contracting nets; for chaotic ones it stalls or blows up until the exact
prefix has grown (one state per iteration); the damped method stays finite.
The min cells' step is affine in the carry, so one Newton step is exact and
their exact pass (`unroll(method="affine")`, one affine scan) is compared
with the sequential scan as well. Iteration counts to 1e-10 also come from
one solve per cell and method at a longer T (1000), with the same parameters.

    python experiments/parallel_in_time.py [--quick] [--out DIR]
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _common import Report, anchor, enable_x64, fmt, parse_args, publish

import lstmjax as lj
from lstmjax import losses, tasks

NAME = "parallel_in_time"
METHODS = ("newton", "quasi_newton", "elk")
CELLS = {"rnn": lj.rnn, "gru": lj.gru, "lstm": lj.lstm, "min_gru": lj.min_gru}
CELLS |= {"min_lstm": lj.min_lstm}
MIN_CELLS = ("min_gru", "min_lstm")
TOL = 1e-10  # "converged": float64 residual at or below this
COLORS = {"newton": "C0", "quasi_newton": "C1", "elk": "C2"}
Y_RANGE = (1e-17, 1e8)  # residual axes; a diverging iterate leaves through the top


@dataclasses.dataclass(frozen=True)
class Traced(lj.Cell):
    """`cell` whose output is its whole carry, raveled.

    A solve's outputs (the cell's `output` of every state of its final
    iterate) are then the iterate itself; the output does not enter the
    equations the solvers iterate on, so the iterates are those of `cell`.
    """

    cell: lj.Cell
    output_size: int  # the raveled carry's size

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    @property
    def name(self) -> str:
        return f"{self.cell.name} (traced)"

    def init(self, key, input_size):
        return self.cell.init(key, input_size)

    def initial_carry(self, batch_shape=()):
        return self.cell.initial_carry(batch_shape)

    def project(self, params, x):
        return self.cell.project(params, x)

    def recur(self, params, carry, px):
        new, _ = self.cell.recur(params, carry, px)
        return new, self.output(new)

    def output(self, carry):
        return jnp.concatenate(jax.tree_util.tree_leaves(carry), axis=-1)


def traced(cell: lj.Cell) -> lj.Cell:
    """`Traced(cell)`: its outputs are its carries (see `Traced`)."""
    size = sum(leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(cell.initial_carry(())))
    return Traced(cell, size)


def as_states(cell: lj.Cell, ys: jax.Array):
    """The iterate as the solver's `init` (leaves `[B, T, n_i]`) from traced `ys` `[B, T, N]`."""
    leaves, treedef = jax.tree_util.tree_flatten(cell.initial_carry(()))
    cuts = np.cumsum([leaf.shape[-1] for leaf in leaves])[:-1].tolist()
    return treedef.unflatten(jnp.split(ys, cuts, axis=-1))


class Solvers(NamedTuple):
    """One cell's jitted solver calls, compiled once per method and shared by its settings."""

    iterate: dict  # method -> `(params, xs, init) -> (next iterate, its residual)`
    solve: dict  # method -> `(params, xs) -> ParallelInfo` of a solve of at most T iterations


SOLVERS = {"newton": lj.Newton, "quasi_newton": lj.QuasiNewton, "elk": lj.ELK}


def solvers(cell: lj.Cell) -> Solvers:
    wcell = traced(cell)

    def iterate(method):
        def one(params, xs, init):
            ys, _, info = lj.unroll_parallel(
                wcell, params, xs, method=SOLVERS[method](max_iters=1, tol=1e-300), init=init
            )
            return as_states(cell, ys), info.residual

        return jax.jit(one)

    def solve(method):
        def whole(params, xs):
            T = xs.shape[1]
            solver = SOLVERS[method](max_iters=T, tol=TOL)
            return lj.unroll_parallel(cell, params, xs, method=solver)[2]

        return jax.jit(whole)

    return Solvers({m: iterate(m) for m in METHODS}, {m: solve(m) for m in METHODS})


def curve(cell, params, xs, method: str, iters: int, fns: Optional[Solvers] = None) -> list[float]:
    """Residual after k = 1..iters iterations from the zero guess (inf/NaN kept: divergence).

    Each iteration is one call with `max_iters=1` from the previous iterate
    (`init`): the methods keep no state between iterations (ELK's damping is
    fixed), so this is the same sequence of iterates as one solve of k
    iterations, at one compilation instead of one per k. `fns`: the cell's
    `solvers` (built here if None).
    """
    one = (fns or solvers(cell)).iterate[method]
    T, B = xs.shape[1], xs.shape[0]
    state = jax.tree_util.tree_map(
        lambda c: jnp.zeros((B, T) + c.shape[1:], c.dtype), cell.initial_carry((B,))
    )
    out = []
    for _ in range(iters):
        state, residual = one(params, xs, state)
        out.append(float(residual))
    return out


def affine_check(cell, params, xs) -> dict:
    """A min cell's one-pass exact solution: its residual and its distance from the scan."""
    ys, _ = lj.unroll(cell, params, xs, method="affine")
    ys_scan, _ = lj.unroll(cell, params, xs, method="scan")
    carry0 = cell.initial_carry((xs.shape[0],))
    prev = jnp.concatenate([carry0[:, None], ys[:, :-1]], axis=1)  # y_t = h_t for the min cells
    again, _ = cell.recur(params, prev, cell.project(params, xs))
    return {
        "residual": float(jnp.max(jnp.abs(ys - again))),
        "max_abs_vs_scan": float(jnp.max(jnp.abs(ys - ys_scan))),
    }


def train_flip_flop(cell, params, key, config) -> tuple[object, list[float]]:
    """Adam on the flip-flop task (MSE at every step, linear readout): `(cell params, losses)`."""
    readout = lj.dense(config["bits"])
    k_out, k_data = jax.random.split(key)
    model = (params, readout.init(k_out, cell.output_size))
    optimizer = optax.chain(
        optax.clip_by_global_norm(config["clip_norm"]), optax.adam(config["learning_rate"])
    )

    def loss_fn(model, xs, ys):
        hs, _ = lj.unroll(cell, model[0], xs, method="scan")
        return losses.mse(readout.apply(model[1], hs), ys)

    @jax.jit
    def run(model):
        def body(carry, n):
            model, opt = carry
            xs, ys = flip_flop(jax.random.fold_in(k_data, n), config["train_batch"], config)
            loss, grads = jax.value_and_grad(loss_fn)(model, xs, ys)
            updates, opt = optimizer.update(grads, opt, model)
            return (optax.apply_updates(model, updates), opt), loss

        carry = (model, optimizer.init(model))
        return jax.lax.scan(body, carry, jnp.arange(config["train_steps"]))

    (model, _), history = run(model)
    return model[0], np.asarray(history).tolist()


def flip_flop(key, batch: int, config: dict):
    return tasks.flip_flop(key, batch, config["steps"], bits=config["bits"], dtype=jnp.float64)


def solve_count(fns: Solvers, params, xs, method: str) -> dict:
    """One solve (at most T iterations): its iterations and final residual."""
    info = fns.solve[method](params, xs)
    return {"iterations": int(info.iterations), "residual": float(info.residual)}


def converged_in(solve: dict):
    """The iterations of a solve that reached TOL (finite residual), or None."""
    ok = np.isfinite(solve["residual"]) and solve["residual"] <= TOL
    return solve["iterations"] if ok else None


def first_below(ys, tol: float = TOL):
    """The first iteration (1-based) whose residual is finite and <= tol, or None."""
    return next((k + 1 for k, y in enumerate(ys) if np.isfinite(y) and y <= tol), None)


def run_settings(config: dict, key) -> dict:
    """Curves, iteration counts and training losses for every cell and setting."""
    xs, _ = flip_flop(jax.random.fold_in(key, 0), config["batch"], config)
    long_xs, _ = flip_flop(
        jax.random.fold_in(key, 1), config["batch"], config | {"steps": config["long_steps"]}
    )
    curves = {"init": {}, "trained": {}, "chaotic": {}}
    at_length = {"T": config["long_steps"], "init": {}, "trained": {}, "chaotic": {}}
    affine, train_loss = {"init": {}, "trained": {}}, {}
    iters = config["iters"]
    for i, (name, make) in enumerate(CELLS.items()):
        cell = make(config["hidden"], dtype=jnp.float64)
        fns = solvers(cell)
        params = cell.init(jax.random.fold_in(key, 1 + i), config["bits"])
        trained, history = train_flip_flop(cell, params, jax.random.fold_in(key, 100 + i), config)
        train_loss[name] = {"first": history[0], "last": history[-1]}
        for setting, p in (("init", params), ("trained", trained)):
            curves[setting][name] = {m: curve(cell, p, xs, m, iters, fns) for m in METHODS}
            at_length[setting][name] = {m: solve_count(fns, p, long_xs, m) for m in METHODS}
            if name in MIN_CELLS:
                affine[setting][name] = affine_check(cell, p, xs)
        if name == "rnn":
            chaotic = params._replace(w_h=config["chaotic_gain"] * params.w_h)
            curves["chaotic"][name] = {m: curve(cell, chaotic, xs, m, iters, fns) for m in METHODS}
            at_length["chaotic"][name] = {m: solve_count(fns, chaotic, long_xs, m) for m in METHODS}
    iterations = {
        setting: {n: {m: first_below(ys) for m, ys in per.items()} for n, per in c.items()}
        for setting, c in curves.items()
    }
    return {"curves": curves, "iterations_to_tol": iterations, "affine_pass": affine,
            "train_loss": train_loss, "iterations_at_length": at_length}  # fmt: skip


def anchors_of(result: dict) -> list[dict]:
    it = result["iterations_to_tol"]
    few = [it["init"][n]["newton"] for n in ("rnn", "gru", "lstm")]
    one = [
        it[s][n][m]
        for s in ("init", "trained")
        for n in MIN_CELLS
        for m in ("newton", "quasi_newton")
    ]
    elk = np.asarray(result["curves"]["chaotic"]["rnn"]["elk"], float)
    return [
        anchor("Newton converges in a few iterations for contracting nets (DEER)",
               "<= 10 iterations", max(v or 1e9 for v in few),
               all(v is not None and v <= 10 for v in few)),
        anchor("ELK stays finite on the chaotic RNN (Gonzalez et al.)", "finite residuals",
               float(np.nanmax(elk)), bool(np.all(np.isfinite(elk)))),
        anchor("min cells (affine step): one Newton / quasi-Newton step is exact",
               "1 iteration, init and trained", max(v or 1e9 for v in one),
               all(v == 1 for v in one)),
    ]  # fmt: skip


def plot_curves(ax, per_method: dict, title: str) -> None:
    for method, ys in per_method.items():
        ys = np.asarray(ys, float)
        shown = np.where(np.isfinite(ys) & (ys > 0), ys, np.nan)  # log axis: 0 is off the chart
        ax.semilogy(np.arange(1, len(ys) + 1), shown, color=COLORS[method], label=method)
    ax.axhline(TOL, color="k", ls=":", lw=1)
    ax.set_ylim(*Y_RANGE)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="major")


def plot_counts(ax, iterations: dict, cap: int) -> None:
    """Grouped bars: iterations to TOL per cell and method, init (solid) vs trained (hatched)."""
    names = list(iterations["init"])
    width = 0.13
    for j, method in enumerate(METHODS):
        for s, (setting, hatch) in enumerate((("init", ""), ("trained", "//"))):
            vals = [iterations[setting][n][method] for n in names]
            x = np.arange(len(names)) + (2 * j + s - 2.5) * width
            heights = [1.5 * cap if v is None else v for v in vals]  # "not within cap"
            ax.bar(x, heights, width, color=COLORS[method], hatch=hatch, edgecolor="k", lw=0.3)
    ax.axhline(cap, color="k", ls=":", lw=1)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, fontsize=8)
    ax.set_yscale("log")
    ax.set_title(f"iterations to {TOL:.0e}: init (plain), trained (hatched);\n"
                 f"above the dotted line: not within {cap}", fontsize=9)  # fmt: skip


def plot(result):
    curves, cfg = result["curves"], result["config"]
    names = list(curves["init"])
    fig, axes = plt.subplots(2, len(names) + 1, figsize=(3.3 * (len(names) + 1), 6.6))
    for j, name in enumerate(names):
        plot_curves(axes[0, j], curves["init"][name], f"{name}, at init")
        plot_curves(axes[1, j], curves["trained"][name], f"{name}, trained")
        axes[1, j].set_xlabel("iteration")
    plot_curves(axes[0, -1], curves["chaotic"]["rnn"], f"rnn, gain {cfg['chaotic_gain']} (chaotic)")
    plot_counts(axes[1, -1], result["iterations_to_tol"], cfg["iters"])
    for row in axes:
        row[0].set_ylabel("max residual")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"Residual max|h_t - f(h_(t-1), x_t)| per iteration, zero guess, T = {cfg['steps']}, "
        f"H = {cfg['hidden']}, float64 (axes cut at {Y_RANGE[1]:.0e}; dotted: {TOL:.0e}); "
        f"trained: {cfg['train_steps']} Adam steps on the 3-bit flip-flop",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    args = parse_args(NAME, argv, __doc__)
    enable_x64()
    config = {"hidden": 16, "bits": 3, "steps": 100, "batch": 4, "iters": 100, "chaotic_gain": 3.0}
    config |= {"train_steps": 500, "train_batch": 32, "learning_rate": 1e-2, "clip_norm": 1.0}
    config |= {"long_steps": 1000}  # one solve per cell and method at this T: iterations only
    if args.quick:
        config |= {"hidden": 4, "steps": 10, "batch": 2, "iters": 10, "train_steps": 20}
        config |= {"train_batch": 8, "long_steps": 20}
    out = run_settings(config, jax.random.PRNGKey(args.seed))
    few = {n: out["iterations_to_tol"]["init"][n]["newton"] for n in ("rnn", "gru", "lstm")}
    data = {**out, "newton_iterations_to_1e-10": few}
    data["anchors"] = anchors_of(data)
    return publish(args, NAME, config, data, {f"{NAME}.png": plot})


def counts(per_cell: dict, method: str, cap: int) -> str:
    return ", ".join(f"{n} {v if v is not None else f'> {cap}'}" for n, v in
                     ((n, per[method]) for n, per in per_cell.items()))  # fmt: skip


def report(result: dict) -> Report:
    it, cap = result["iterations_to_tol"], result["config"]["iters"]
    c = result["curves"]["chaotic"]["rnn"]
    loss = result["train_loss"]
    parts = [
        f"Iterations to a residual of {TOL:.0e} from the zero guess (T = "
        f"{result['config']['steps']}, at most {cap})."
    ]
    for method in METHODS:
        parts.append(
            f"{method}: at init {counts(it['init'], method, cap)}; after training "
            f"{counts(it['trained'], method, cap)}."
        )
    long = {
        k: v
        if k == "T"
        else {n: {m: converged_in(r) for m, r in per.items()} for n, per in v.items()}
        for k, v in result["iterations_at_length"].items()
    }
    chaos = result["iterations_at_length"]["chaotic"]["rnn"]
    parts.append(
        f"At T = {long['T']} (one solve each, at most T iterations; same parameters): "
        + "; ".join(
            f"{m} at init {counts(long['init'], m, long['T'])}, after training "
            f"{counts(long['trained'], m, long['T'])}, chaotic rnn "
            f"{long['chaotic']['rnn'][m] or '> ' + str(long['T'])}"
            for m in METHODS
        )
        + " (chaotic rnn's final residuals: "
        + ", ".join(f"{m} {fmt(chaos[m]['residual'])}" for m in METHODS)
        + ")."
    )
    parts.append(
        "Flip-flop training MSE, first to last step: "
        + ", ".join(f"{n} {fmt(v['first'])} -> {fmt(v['last'])}" for n, v in loss.items())
        + "."
    )
    aff = result["affine_pass"]
    parts.append(
        "The min cells' one-pass affine solution: residual "
        + ", ".join(f"{n} {fmt(aff[s][n]['residual'])} ({s})" for s in aff for n in aff[s])
        + "; largest difference from the sequential scan "
        + fmt(max(aff[s][n]["max_abs_vs_scan"] for s in aff for n in aff[s]))
        + "."
    )
    parts.append(
        f"On the chaotic tanh RNN (gain {result['config']['chaotic_gain']}) Newton's first "
        f"iterate has residual {fmt(c['newton'][0])}; it reaches {TOL:.0e} at iteration "
        f"{it['chaotic']['rnn']['newton'] or f'> {cap}'}, as the exact prefix grows; "
        f"residual after {len(c['newton'])} "
        f"iterations {fmt(c['newton'][-1])} (newton), {fmt(c['quasi_newton'][-1])} "
        f"(quasi_newton), {fmt(c['elk'][-1])} (elk); largest ELK residual "
        f"{fmt(float(np.nanmax(np.asarray(c['elk'], float))))}."
    )
    return Report([(result["figures"][0], " ".join(parts))], result["anchors"])


if __name__ == "__main__":
    main()

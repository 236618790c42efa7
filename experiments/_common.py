"""What every experiment script shares: its command line, seeding, JSON, figures.

An experiment module `experiments/<name>.py` provides

    NAME = "<name>"
    def main(argv: list[str] | None = None) -> dict   # runs, writes JSON + PNG
    def report(result: dict) -> Report                # findings and anchor rows

and ends `main` with `publish`, which writes `DIR/<name>.json` (every plotted
number, the configuration and the seed) and `DIR/<name>*.png`. `run_all.py`
reads the JSON back and asks `report` for the lines of `REPORT.md`, so no
number in the report is typed in.

Matplotlib is used here and in the experiments only, never in the library.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed (or wanted) on a server

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

DEFAULT_OUT = Path("results")


class Report(NamedTuple):
    """What an experiment contributes to REPORT.md.

    Attributes:
      findings: one line per figure, `(figure file name, finding)`; the
        finding's numbers come from the JSON.
      anchors: rows `{"anchor", "expected", "measured", "pass"}` (see `anchor`).
    """

    findings: list[tuple[str, str]]
    anchors: list[dict[str, Any]]


def parse_args(name: str, argv: Optional[Sequence[str]], doc: str = "") -> argparse.Namespace:
    """The shared command line: `--quick`, `--out DIR` (default results/), `--seed`."""
    # Raw description: the module docstring's paragraphs and lists stay as written.
    parser = argparse.ArgumentParser(
        prog=f"{name}.py", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: at most a minute on a laptop CPU"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: results/)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def seed_everything(seed: int) -> jax.Array:
    """Seed Python's and NumPy's generators and return a JAX key for `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    return jax.random.PRNGKey(seed)


def enable_x64() -> None:
    """Turn on float64 in JAX, for experiments whose claims need double precision.

    Everything that should stay float32 (training) asks for it explicitly.
    """
    jax.config.update("jax_enable_x64", True)


def progress(
    iterable: Optional[Iterable] = None, *, desc: str, unit: str, total: Optional[int] = None
):
    """A tqdm progress bar on stderr (`bar.update(n)` when used without an iterable).

    `desc` names the stage ("vanishing_gradients: training lstm, seed 2") and
    `unit` what is counted ("update", "cell"), so the bar reads "120/3000
    update" rather than a bare count of "it".
    """
    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False)


def to_jsonable(value: Any) -> Any:
    """Arrays to lists, NumPy scalars to Python, non-finite floats to strings."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        return to_jsonable(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf" / "nan": strict JSON has no such numbers
    return value


def publish(
    args: argparse.Namespace,
    name: str,
    config: dict,
    data: dict,
    figures: dict[str, Callable[[dict], Figure]],
) -> dict:
    """Write `args.out/<name>.json`, draw and save each figure, then say where they are.

    The JSON holds `name`, the seed, `quick`, `config`, the entries of `data`
    (every plotted number and the "anchors") and "figures": the file names,
    the keys of `figures`, in order. Each value of `figures` draws its figure
    from the result as written (the JSON-able dict returned here); one that
    plots raw arrays may ignore it. The JSON goes first, so that a plotting
    error does not lose a long run's numbers; the announcement goes last, once
    every file it names exists.
    """
    head = {"name": name, "seed": args.seed, "quick": args.quick, "config": config}
    result = to_jsonable({**head, **data, "figures": list(figures)})
    write_json(args.out / f"{name}.json", result)
    for filename, draw in figures.items():
        save_figure(draw(result), args.out / filename)
    announce(args.out, name, result)
    return result


def write_json(path: Path, result: dict) -> None:
    """Write a JSON-able `result` with one top-level key per line."""
    # Readable, without a line per number.
    lines = [f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in result.items()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def save_figure(fig: Figure, path: Path) -> None:
    """Save `fig` as a PNG at `path` and close it (also when saving fails)."""
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def announce(out: Path, name: str, result: dict) -> None:
    """Tell the user where the results are and how the anchors fared."""
    print(f"\n{name}: wrote {out / (name + '.json')}", file=sys.stderr)
    for figure in result.get("figures", []):
        print(f"  figure: {out / figure}", file=sys.stderr)
    for row in result.get("anchors", []):
        verdict = "pass" if row["pass"] else "FAIL"
        print(
            f"  [{verdict}] {row['anchor']}: expected {row['expected']}, "
            f"measured {row['measured']:.3g}",
            file=sys.stderr,
        )


def load_json(out: Path, name: str) -> dict:
    """Read back the JSON that `publish` wrote."""
    return json.loads((Path(out) / f"{name}.json").read_text())


def anchor(name: str, expected: str, measured: float, passed: bool, note: str = "") -> dict:
    """One anchor row for the JSON: what the literature says, what this run measured."""
    row = {"anchor": name, "expected": expected, "measured": float(measured)}
    row["pass"] = bool(passed)
    if note:
        row["note"] = note
    return row


def parameter_count(tree) -> int:
    """The number of scalars in a pytree of arrays (or of `jax.eval_shape` shape structs)."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(tree)))


def matched_size(count: Callable[[int], int], target: int, multiple: int = 1) -> int:
    """The size n (a multiple of `multiple`) whose `count(n)` is closest to `target`.

    `count` must grow with n (a model's parameter count against its hidden
    size): a bisection finds the first multiple at or above the target, and
    the closer of it and the multiple below it wins.
    """
    lo, hi = 1, 4096 // multiple
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid * multiple) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = [j * multiple for j in (lo - 1, lo) if j >= 1]
    return min(candidates, key=lambda n: abs(count(n) - target))


def wrap_lines(lines: Iterable[str], width: int) -> str:
    """`lines` joined by newlines, each wrapped at `width` characters."""
    return "\n".join(textwrap.fill(line, width) for line in lines)


def notes_panel(ax, text: str, width: int = 190) -> None:
    """A figure's panel of notes: no axes, `text` wrapped line by line from the top left."""
    ax.axis("off")
    ax.text(0, 1, wrap_lines(text.split("\n"), width), va="top", ha="left", fontsize=9,
            linespacing=1.4, transform=ax.transAxes)  # fmt: skip


def fmt(x: Any) -> str:
    """A number in three significant digits, for findings and tables."""
    if isinstance(x, str):
        return x
    return f"{float(x):.3g}"

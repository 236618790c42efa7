"""The README's performance block, written from the shipped JSON (never by hand).

The block sits between `BEGIN` and `END` in README.md. A run on a busy
machine, or at quick sizes, gives no headline table: the block then says
why and names the command that writes one. `tests/test_benchmark.py` checks
that the README's block is the one `block(...)` makes from the JSON under
docs/results.
"""

from __future__ import annotations

import _bench_report as report

BEGIN = (
    "<!-- benchmark:begin. Written by `python benchmarks/benchmark.py --mode report` "
    "from docs/results/benchmark*.json; do not edit by hand. -->"
)
END = "<!-- benchmark:end -->"


def withheld(doc: dict) -> str | None:
    """Why `doc` gives no headline, or None when it may."""
    if doc["quick"]:
        return "the latest run used the quick sizes"
    if doc["verdict"]["busy"]:
        v = doc["verdict"]
        return (
            f"the latest run was on a busy machine: {'; '.join(v['reasons'])} (limits: load "
            f"{v['max_load']:.2f}, other processes {100 * v['max_other_share']:.0f}% of the CPUs)"
        )
    return None


def refusal(doc: dict) -> list[str]:
    return [
        f"**No headline table:** {withheld(doc)}. Its figures, labelled with that load, are in "
        "[docs/results/benchmark.md](docs/results/benchmark.md). The headline is pending a "
        f"quiet machine: `{doc['headline_command']}`, then `python benchmarks/benchmark.py "
        "--mode report`.",
    ]


def step_block(doc: dict) -> list[str]:
    lines = [
        "**Training step and inference.**",
        "",
        *report.run_lines(doc, "Run", banner=False),
        "",
    ]
    if withheld(doc):
        return lines + refusal(doc)
    res = doc["results"]
    lines += ["At defaults (ratios of minima; **above 1 means lstmjax is faster**):", ""]
    lines += report.summary_table(res)
    lines += ["", *report.torch_findings(res), *report.tuning_findings(res)]
    table = report.tuning_table(res, impls=("lstmjax", *report.TORCH))
    if table:
        lines += ["", "Default and tuned, lstmjax and PyTorch (min ms; every peer in the file):"]
        lines += ["", *table]
    return lines


def loop_block(doc: dict) -> list[str]:
    lines = ["**End-to-end training.**", "", *report.run_lines(doc, "Run", banner=False), ""]
    if withheld(doc):
        return lines + refusal(doc)
    return lines + [*report.loop_lines(doc), "", *report.loop_table(doc), "",
                    *report.fit_overhead_lines(doc)]  # fmt: skip


def block(step_doc: dict | None, loop_doc: dict | None) -> str:
    """The text between BEGIN and END (without them), from the two JSON documents."""
    lines: list[str] = []
    for doc, make in ((step_doc, step_block), (loop_doc, loop_block)):
        if doc is not None:
            lines += [*make(doc), ""]
    return "\n".join(lines)


def extract(readme: str) -> str:
    """The README's current block (between the markers)."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(
            f"README has no benchmark block: expected the markers {BEGIN!r} and {END!r}"
        )
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def update(readme: str, step_doc: dict | None, loop_doc: dict | None) -> str:
    """`readme` with its benchmark block rewritten from the JSON documents."""
    extract(readme)  # the markers must be there
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block(step_doc, loop_doc).rstrip()}\n{END}{tail}"

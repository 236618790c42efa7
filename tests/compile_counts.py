"""`pytest --compile-counts`: how many XLA programs each test module compiles.

The suite's time goes mostly to compilation, so this is the number to watch
when a module gets slow. JAX reports every backend compilation and every
trace to jaxpr through `jax.monitoring`; this plugin attributes them to the
module of the test that was running (setup and teardown included) and prints a
table, largest first, at the end of the run. Programs served from JAX's
in-memory caches are not compiled again, so they do not count.
"""

from collections import Counter
from pathlib import Path

import jax
import pytest

_COMPILE = "/jax/core/compile/backend_compile_duration"
_TRACE = "/jax/core/compile/jaxpr_trace_duration"


class CompileCounter:
    """Counts compilations, traces and compile seconds per test module."""

    def __init__(self):
        self.module = "(collection)"
        self.compiles = Counter()
        self.traces = Counter()
        self.seconds = Counter()
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **_):
        if event == _COMPILE:
            self.compiles[self.module] += 1
            self.seconds[self.module] += duration
        elif event == _TRACE:
            self.traces[self.module] += 1

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.module = Path(str(item.path)).name
        return (yield)

    def pytest_terminal_summary(self, terminalreporter):
        write = terminalreporter.write_line
        terminalreporter.section("XLA compilations per test module")
        write(f"{'module':<44} {'compiles':>9} {'traces':>8} {'compile s':>10}")
        for module, count in self.compiles.most_common():
            write(f"{module:<44} {count:>9} {self.traces[module]:>8} {self.seconds[module]:>10.1f}")
        total = sum(self.compiles.values())
        write(
            f"{'total':<44} {total:>9} {sum(self.traces.values()):>8} {sum(self.seconds.values()):>10.1f}"
        )


def pytest_addoption(parser):
    parser.addoption(
        "--compile-counts",
        action="store_true",
        help="count XLA compilations and traces per test module and print them at the end",
    )


def pytest_configure(config):
    if not config.getoption("--compile-counts"):
        return
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None):
        raise pytest.UsageError("--compile-counts counts in one process; add -n 0.")
    config.pluginmanager.register(CompileCounter(), "lstmjax-compile-counter")

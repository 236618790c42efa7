"""mkdocs hooks of the lstmjax site (mkdocs.yml names this file under `hooks:`).

Executing the tutorials and examples is most of a build. Two things here:

1. Caching that stays honest. mkdocs-jupyter caches each executed page under a
   key of the notebook's own text; alone, that would serve a page executed
   against an older library. This hook points its cache at a folder named for
   everything else a page ran on: the source of `lstmjax/`, the versions of the
   packages the notebooks import, the Python version and `MPLBACKEND`. A page is
   executed again when its notebook or any of those changes, and reused
   otherwise, so `mkdocs serve` re-executes only what an edit touched. Set
   `LSTMJAX_DOCS_CACHE=0` to execute everything regardless (a fresh clone has
   no cache, so CI always executes everything).
2. Progress. Each notebook is announced before it runs (`[3/13] executing
   tutorials/03_rnn_bptt.py`) and timed after, in wall-clock seconds and in
   CPU seconds (its kernel's and the build's own; less sensitive than the wall
   clock to other work on the machine); the build ends with the totals and
   the slowest pages.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import resource
import shutil
import time
from importlib import metadata
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.lstmjax")

# What the executed pages import (directly or through lstmjax); a new version of
# any of them can change an output.
_PACKAGES = (
    "jax", "jaxlib", "numpy", "optax", "flax", "chex", "orbax-checkpoint", "matplotlib",
    "torch", "scikit-learn", "statsmodels", "mkdocs-jupyter", "nbconvert", "nbclient",
    "ipykernel", "jupytext",
)  # fmt: skip

_PLUGIN = "mkdocs-jupyter"
_state: dict = {}


def _environment_digest(root: Path) -> str:
    """A short hash of the library's source and the versions a page runs on."""
    digest = hashlib.sha256()
    for path in sorted((root / "lstmjax").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    for name in _PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}".encode())
    digest.update(platform.python_version().encode())
    digest.update(os.environ.get("MPLBACKEND", "").encode())
    return digest.hexdigest()[:16]


def on_config(config):
    plugin = config.plugins.get(_PLUGIN)
    if plugin is None:
        return config
    root = Path(config.config_file_path).resolve().parent
    base = root / ".cache" / "mkdocs-jupyter"
    if os.environ.get("LSTMJAX_DOCS_CACHE", "1") == "0":
        plugin.config["cache"] = False
        log.info("executing every notebook (LSTMJAX_DOCS_CACHE=0)")
    elif plugin.config["cache"]:
        folder = base / _environment_digest(root)
        plugin.config["cache_dir"] = str(folder)
        _state["cache"] = folder
    return config


def on_files(files, config):
    plugin = config.plugins.get(_PLUGIN)
    notebooks = [
        f.src_uri
        for f in files
        if plugin is not None and f.src_uri.endswith((".py", ".ipynb")) and plugin.should_include(f)
    ]
    _state.update(order=notebooks, times={}, started=None, build_start=time.perf_counter())
    return files


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the notebook kernels)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def on_page_markdown(markdown, page, config, files):
    order = _state.get("order", [])
    if page.file.src_uri in order:
        number = order.index(page.file.src_uri) + 1
        log.info(f"[{number}/{len(order)}] executing {page.file.src_uri}")
        _state["started"] = (time.perf_counter(), _cpu_seconds())
    return markdown


def on_page_content(html, page, config, files):
    if page.file.src_uri in _state.get("order", []) and _state.get("started") is not None:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        took = (wall - _state["started"][0], cpu - _state["started"][1])
        _state["times"][page.file.src_uri] = took
        log.info(f"      {page.file.src_uri}: {took[0]:.1f} s ({took[1]:.1f} CPU s)")
        _state["started"] = None
    return html


def on_post_build(config):
    times = _state.get("times", {})
    if times:
        slowest = sorted(times.items(), key=lambda item: -item[1][0])[:3]
        wall, cpu = (sum(t[i] for t in times.values()) for i in (0, 1))
        log.info(
            f"notebooks: {wall:.0f} s ({cpu:.0f} CPU s) for {len(times)} "
            f"(slowest: {', '.join(f'{name} {t[0]:.0f} s' for name, t in slowest)}); "
            f"whole build so far {time.perf_counter() - _state['build_start']:.0f} s"
        )
    folder = _state.get("cache")
    if folder is not None and folder.parent.is_dir():
        for other in folder.parent.iterdir():  # caches of earlier library versions
            if other.is_dir() and other != folder:
                shutil.rmtree(other, ignore_errors=True)

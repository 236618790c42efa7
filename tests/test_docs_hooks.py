"""The docs build's hooks (docs_build/hooks.py), without running mkdocs.

The cache key must change with everything an executed page ran on (the library's
source, a package version, `MPLBACKEND`) and with nothing else, so that a build
reuses a page exactly when its result cannot have changed; `on_config` points
mkdocs-jupyter's cache at the folder of that key, and `on_post_build` removes the
folders of other keys. mkdocs' objects are stood in for by plain ones.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

HOOKS_FILE = Path(__file__).resolve().parents[1] / "docs_build" / "hooks.py"


@pytest.fixture
def hooks(monkeypatch):
    spec = importlib.util.spec_from_file_location("lstmjax_docs_hooks", HOOKS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a fresh module: its `_state` starts empty
    monkeypatch.delenv("LSTMJAX_DOCS_CACHE", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return module


@pytest.fixture
def root(tmp_path):
    """A stand-in repository: mkdocs.yml and a two-file `lstmjax/`."""
    (tmp_path / "lstmjax" / "sub").mkdir(parents=True)
    (tmp_path / "lstmjax" / "a.py").write_text("A = 1\n")
    (tmp_path / "lstmjax" / "sub" / "b.py").write_text("B = 2\n")
    (tmp_path / "lstmjax" / "notes.txt").write_text("not source")
    (tmp_path / "mkdocs.yml").write_text("site_name: x\n")
    return tmp_path


def config_for(root: Path, cache: bool = True):
    plugin = SimpleNamespace(config={"cache": cache})
    config = SimpleNamespace(
        plugins={"mkdocs-jupyter": plugin}, config_file_path=str(root / "mkdocs.yml")
    )
    return config, plugin


def test_the_key_follows_the_source_the_versions_and_the_backend(hooks, root, monkeypatch):
    key = hooks._environment_digest(root)
    assert len(key) == 16 and int(key, 16) >= 0
    assert hooks._environment_digest(root) == key  # a hit: nothing changed
    (root / "lstmjax" / "notes.txt").write_text("edited, but not source")
    assert hooks._environment_digest(root) == key  # only *.py files count
    (root / "lstmjax" / "sub" / "b.py").write_text("B = 3\n")
    edited = hooks._environment_digest(root)
    assert edited != key  # a miss: the library changed
    (root / "lstmjax" / "sub" / "b.py").rename(root / "lstmjax" / "b.py")
    assert hooks._environment_digest(root) != edited  # a moved file is another library
    moved = hooks._environment_digest(root)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert hooks._environment_digest(root) != moved
    monkeypatch.delenv("MPLBACKEND")
    real = hooks.metadata.version

    def numpy_upgraded(name):
        return "99.0" if name == "numpy" else real(name)

    monkeypatch.setattr(hooks.metadata, "version", numpy_upgraded)
    assert hooks._environment_digest(root) != moved


def test_an_absent_package_is_part_of_the_key(hooks, root, monkeypatch):
    real = hooks.metadata.version
    installed = hooks._environment_digest(root)  # numpy is installed wherever tests run

    def no_numpy(name):
        if name == "numpy":
            raise hooks.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(hooks.metadata, "version", no_numpy)
    absent = hooks._environment_digest(root)  # "numpy==absent", not an error
    assert absent != installed and absent == hooks._environment_digest(root)


def test_on_config_points_the_cache_at_the_key(hooks, root):
    config, plugin = config_for(root)
    assert hooks.on_config(config) is config
    folder = root / ".cache" / "mkdocs-jupyter" / hooks._environment_digest(root)
    assert plugin.config["cache_dir"] == str(folder) and plugin.config["cache"] is True
    (root / "lstmjax" / "a.py").write_text("A = 2\n")
    again, plugin_again = config_for(root)
    hooks.on_config(again)
    assert plugin_again.config["cache_dir"] != str(folder)  # a new folder: every page runs


def test_cache_off_by_environment_or_by_the_plugin(hooks, root, monkeypatch):
    config, plugin = config_for(root, cache=False)
    hooks.on_config(config)
    assert plugin.config == {"cache": False}  # the plugin's own choice is kept
    monkeypatch.setenv("LSTMJAX_DOCS_CACHE", "0")
    config, plugin = config_for(root)
    hooks.on_config(config)
    assert plugin.config == {"cache": False}
    bare = SimpleNamespace(plugins={}, config_file_path=str(root / "mkdocs.yml"))
    assert hooks.on_config(bare) is bare  # no mkdocs-jupyter: nothing to do


def test_post_build_keeps_only_the_current_cache(hooks, root):
    config, plugin = config_for(root)
    hooks.on_config(config)
    current = Path(plugin.config["cache_dir"])
    stale = current.parent / "0123456789abcdef"
    for folder in (current, stale):
        folder.mkdir(parents=True)
        (folder / "page.ipynb").write_text("{}")
    (current.parent / "a-file").write_text("kept: not a cache folder")
    hooks.on_post_build(config)
    assert sorted(p.name for p in current.parent.iterdir()) == sorted(["a-file", current.name])
    assert (current / "page.ipynb").exists()


def test_notebooks_are_numbered_and_timed(hooks, root, caplog):
    config, plugin = config_for(root)
    plugin.should_include = lambda f: f.src_uri.startswith("tutorials/")
    files = [
        SimpleNamespace(src_uri=name)
        for name in ("index.md", "tutorials/01_a.py", "tutorials/02_b.py", "other/x.py")
    ]
    assert hooks.on_files(files, config) is files
    caplog.set_level("INFO", logger="mkdocs.hooks.lstmjax")
    for name in ("index.md", "tutorials/02_b.py"):
        page = SimpleNamespace(file=SimpleNamespace(src_uri=name))
        assert hooks.on_page_markdown("text", page, config, files) == "text"
        assert hooks.on_page_content("<p/>", page, config, files) == "<p/>"
    assert "[2/2] executing tutorials/02_b.py" in caplog.text
    assert "index.md" not in caplog.text  # not a notebook: neither announced nor timed
    (took,) = hooks._state["times"].values()
    assert list(hooks._state["times"]) == ["tutorials/02_b.py"] and min(took) >= 0

"""The API reference documents every public name, and every page is in the site's nav.

The reference pages (docs/api/*.md) are mkdocstrings directives, `::: lstmjax.NAME`.
A module directive renders the names the module defines and, where it has an
`__all__`, those it lists; names a module only re-exports without an `__all__`
(`from ._x import y as y`) need a directive of their own. This test reads the
sources with `ast`, so it needs none of the docs extras.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import lstmjax

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^:::\s+(lstmjax(?:\.\w+)*)\s*$", re.MULTILINE)

# Public names whose docstring is still missing (their fields are explained in
# comments, which the site cannot show). The set must shrink, never grow: the
# test fails when one of these gains a docstring (remove it here) or a new
# public name comes without one.
KNOWN_UNDOCUMENTED: set[str] = set()


def _directives() -> set[str]:
    found = set()
    for page in (DOCS / "api").glob("*.md"):
        found.update(DIRECTIVE.findall(page.read_text()))
    return found


def _source(module) -> ast.Module:
    return ast.parse(Path(module.__file__).read_text())


def _literal_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return None


def _reexports(tree: ast.Module) -> set[str]:
    """Names imported as `from x import y as y`, the explicit re-export idiom."""
    return {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    }


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def _public_submodules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(lstmjax.__path__, prefix="lstmjax."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _public_names(module_name: str) -> tuple[set[str], set[str]]:
    """(every public name, the subset a bare module directive would not render)."""
    tree = _source(importlib.import_module(module_name))
    listed = _literal_all(tree)
    if listed is not None:
        return set(listed), set()
    reexports = _reexports(tree) - {"annotations"}
    return _defined(tree) | reexports, reexports


def test_all_lists_exactly_the_reexports_and_the_public_modules():
    tree = _source(lstmjax)
    modules = {name.split(".")[1] for name in _public_submodules()}
    assert sorted(lstmjax.__all__) == sorted(_reexports(tree) | modules), (
        "lstmjax.__all__ must list every name lstmjax/__init__.py re-exports and every "
        "public module (an attribute loaded on first use), and only those"
    )
    assert len(set(lstmjax.__all__)) == len(lstmjax.__all__)


def test_every_public_module_is_an_attribute_and_defines_all():
    for module_name in _public_submodules():
        short = module_name.split(".")[1]
        if "." in module_name.removeprefix("lstmjax."):
            continue  # lstmjax.interop.x and the like: reached through their parent
        module = getattr(lstmjax, short)
        assert module.__name__ == module_name
        assert isinstance(getattr(module, "__all__", None), list), f"{module_name}: no __all__"


def test_every_top_level_name_has_a_reference_entry():
    directives = _directives()
    modules = set(_public_submodules())
    missing = []
    for name in lstmjax.__all__:
        full = f"lstmjax.{name}"
        if full in modules:
            continue  # a submodule: checked by the next test
        if full not in directives:
            missing.append(full)
    assert not missing, f"add `::: NAME` entries to docs/api/*.md for: {missing}"


def test_every_public_module_and_name_is_documented():
    directives = _directives()
    missing = []
    for module_name in _public_submodules():
        if module_name not in directives:
            missing.append(module_name)
            continue
        names, need_own_entry = _public_names(module_name)
        missing += [
            f"{module_name}.{n}"
            for n in sorted(need_own_entry)
            if f"{module_name}.{n}" not in directives
        ]
        assert names, module_name
    assert not missing, f"add `::: NAME` entries to docs/api/*.md for: {missing}"


def test_every_directive_names_something_that_exists():
    for target in sorted(_directives()):
        parts = target.split(".")
        obj = importlib.import_module(parts[0])
        for i, part in enumerate(parts[1:], start=1):
            if not hasattr(obj, part):
                obj = importlib.import_module(".".join(parts[: i + 1]))
            else:
                obj = getattr(obj, part)
        assert obj is not None, target


def _has_docstring(obj) -> bool:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or not doc.strip():
        return False
    # typing.NamedTuple writes "Name(field, ...)" when the class has none.
    return not (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("))


def test_public_functions_and_classes_have_docstrings():
    undocumented = set()
    modules = {"lstmjax": set(lstmjax.__all__)}
    for module_name in _public_submodules():
        modules[module_name] = _public_names(module_name)[0]
    for module_name, names in modules.items():
        module = importlib.import_module(module_name)
        for name in names:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                assert obj.__doc__, f"{obj.__name__} has no module docstring"
            elif (inspect.isfunction(obj) or inspect.isclass(obj)) and not _has_docstring(obj):
                undocumented.add(f"{module_name}.{name}")
    assert undocumented == KNOWN_UNDOCUMENTED, (
        f"new public names without a docstring: {sorted(undocumented - KNOWN_UNDOCUMENTED)}; "
        f"documented now, remove from KNOWN_UNDOCUMENTED: "
        f"{sorted(KNOWN_UNDOCUMENTED - undocumented)}"
    )


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1]
    in_nav = set(re.findall(r":\s+(\S+\.(?:md|py))\s*$", nav, re.MULTILINE))
    pages = {
        str(p.relative_to(DOCS))
        for pattern in ("**/*.md", "tutorials/*.py", "examples/*.py")
        for p in DOCS.glob(pattern)
    }
    assert pages - in_nav == set(), f"pages missing from mkdocs.yml's nav: {pages - in_nav}"
    assert in_nav - pages == set(), f"nav entries without a page: {in_nav - pages}"


def _args_entries(doc: str) -> list[str]:
    """The names of a Google-style docstring's `Args:` entries, as written."""
    lines = inspect.cleandoc(doc).splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    if not starts:
        return []
    header = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    body = []
    for line in lines[starts[0] + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= header:
            break  # the next section
        if line.strip():
            body.append(line)
    if not body:
        return []
    indent = min(len(line) - len(line.lstrip()) for line in body)
    return [
        line.strip().split(":", 1)[0].split(" (", 1)[0]
        for line in body
        if len(line) - len(line.lstrip()) == indent
    ]


def test_every_args_entry_names_one_parameter():
    # The API tables pair each entry with its parameter's default; an entry that groups
    # several ("kernel_init, recurrent_init: ...") matches none, and the table says
    # "required" for parameters that have defaults.
    wrong = []
    modules = {"lstmjax": set(lstmjax.__all__)}
    for module_name in _public_submodules():
        modules[module_name] = _public_names(module_name)[0]
    for module_name, names in modules.items():
        module = importlib.import_module(module_name)
        for name in sorted(names):
            obj = getattr(module, name)
            if not inspect.isfunction(obj) or not obj.__doc__:
                continue
            params = set(inspect.signature(obj).parameters)
            for entry in _args_entries(obj.__doc__):
                if entry.lstrip("*") not in params:
                    wrong.append(f"{module_name}.{name}: {entry!r}")
    assert not wrong, f"Args entries that name no single parameter: {wrong}"

"""Attributes of a package that import their module on first use (PEP 562).

So that `import lstmjax` stays light: `lj.checkpoint` loads orbax, and
`lj.interop.from_flax` loads flax, only when they are first touched.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_attributes(package: str, names: dict[str, str], eager: list[str]):
    """`(__getattr__, __dir__)` for `package`.

    Args:
      package: the package's `__name__`.
      names: attribute -> module to import: `"train": "lstmjax.train"` binds the
        module itself, `"from_flax": "lstmjax.interop._flax"` the attribute of
        that name in it.
      eager: the names the package defines itself, for `dir()`.
    """

    def __getattr__(name: str):  # noqa: N807 (the module hook's name)
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name])
        value = module if module.__name__.endswith("." + name) else getattr(module, name)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(eager) | set(names))

    hooks: tuple[Callable, Callable] = (__getattr__, __dir__)
    return hooks

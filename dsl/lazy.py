"""Exports that load their submodule on first use (PEP 562), for a package's `__init__`:

    __getattr__, __dir__ = lazy_exports(__name__, {"parse": "parser", ...}, __all__)

so that ``from dsl import RuleError`` loads `dsl.errors` alone, and the command line's
listings never import torch (which the op table needs)."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping, Sequence


def lazy_exports(package: str, exports: Mapping[str, str], names: Sequence[str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`: `exports` maps an exported name to the
    submodule (relative, without the dot) that defines it."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)  # once loaded, a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__

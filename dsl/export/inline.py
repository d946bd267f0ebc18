"""The runtime modules' source, as each exported module holds it.

`runtime_ops` (the math helpers) and `runtime_shell` (the optimizer shell) are ordinary,
linted modules of this package. An export copies the top-level definitions it needs from
their source text (read with `inspect`, so this works from a checkout and from an installed
wheel alike) and never imports them: the exported file needs only torch.
"""

from __future__ import annotations

import ast
import inspect
from functools import cache
from types import ModuleType

from .. import context, model_ops
from ..ops import NS_COEFFS, NS_EPS, NS_STEPS
from . import runtime_group, runtime_ops, runtime_shell

SHELL_CLASS = "OptimizerShell"


@cache
def _definitions(module: ModuleType) -> dict[str, str]:
    """Top-level function and class definitions of `module`: name -> source (decorators
    included, dedented to the module level)."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out[node.name] = "\n".join(lines[first - 1:node.end_lineno])
    return out


def helper_names() -> frozenset[str]:
    """The math helpers an export may inline (`runtime_ops`' functions)."""
    return frozenset(_definitions(runtime_ops))


def shell_names() -> frozenset[str]:
    """The module-level functions every export inlines from `runtime_shell`."""
    return frozenset(n for n in runtime_shell.INLINED if n != SHELL_CLASS)


def helper_source(names: set[str] | frozenset[str]) -> list[str]:
    """The source of the math helpers `names`, in a fixed order (`_orth` last, after the
    Newton–Schulz constants it reads, written from `dsl.ops`), each followed by two blank
    lines; `_scalar_like` always comes last."""
    defs = _definitions(runtime_ops)
    unknown = set(names) - set(defs)
    if unknown:
        raise KeyError(f"no runtime helper {', '.join(sorted(unknown))} in runtime_ops")
    ordered = sorted(n for n in names if n not in ("_orth", "_scalar_like"))
    out: list[str] = []
    for name in ordered:
        out += [defs[name], "", ""]
    if "_orth" in names:
        out += [f"_NS_COEFFS = {tuple(NS_COEFFS)!r}", f"_NS_EPS = {NS_EPS!r}",
                f"_NS_STEPS = {NS_STEPS!r}", "", "", defs["_orth"], "", ""]
    out += [defs["_scalar_like"], "", ""]
    return out


@cache
def shell_methods() -> str:
    """The body of `OptimizerShell` (its methods, indented for a class body), without the
    class line and docstring."""
    tree = ast.parse(_definitions(runtime_shell)[SHELL_CLASS])
    cls = tree.body[0]
    assert isinstance(cls, ast.ClassDef)
    first = cls.body[1] if ast.get_docstring(cls) is not None else cls.body[0]
    start = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
    lines = _definitions(runtime_shell)[SHELL_CLASS].splitlines()
    return "\n".join(lines[start - 1:])


@cache
def shell_functions() -> str:
    """The module-level functions of the shell, in `runtime_shell.INLINED` order."""
    defs = _definitions(runtime_shell)
    return "\n\n\n".join(defs[n] for n in runtime_shell.INLINED if n != SHELL_CLASS)


# ---- staged modules (dsl.export.group) ----------------------------------------------------------

GROUP_CLASS = "GroupShell"
MODEL_FUNCTIONS = ((model_ops, ("_flat", "global_sum", "global_norm")),
                   (context, ("rademacher", "hutchinson")))
"""What a staged module copies from `dsl.model_ops` and `dsl.context` (annotations dropped)."""


def _methods(module: ModuleType, cls_name: str) -> list[tuple[str, str]]:
    """(name, source indented for a class body) of each method of class `cls_name`."""
    text = _definitions(module)[cls_name]
    lines = text.splitlines()
    cls = ast.parse(text).body[0]
    assert isinstance(cls, ast.ClassDef)
    out = []
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out.append((node.name, "\n".join(lines[first - 1:node.end_lineno])))
    return out


@cache
def group_methods() -> str:
    """The class body of a staged optimizer: `OptimizerShell`'s methods, those that
    `runtime_group.REPLACED` names taken from `GroupShell` instead."""
    own = dict(_methods(runtime_group, GROUP_CLASS))
    body = []
    for name, source in _methods(runtime_shell, SHELL_CLASS):
        body.append(own.pop(name) if name in runtime_group.REPLACED else source)
    body += own.values()
    return "\n\n".join(body)


def _without_annotations(source: str) -> str:
    """`source` (one function) without annotations, which a module without
    ``from __future__ import annotations`` would evaluate."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                if arg is not None:
                    arg.annotation = None
    return ast.unparse(tree)


@cache
def group_functions() -> str:
    """The module-level functions of a staged module: the whole-group reductions and the
    Hutchinson estimate (from `dsl.model_ops` and `dsl.context`), then the staged shell's."""
    parts = [_without_annotations(_definitions(module)[name])
             for module, names in MODEL_FUNCTIONS for name in names]
    defs = _definitions(runtime_group)
    parts += [defs[n] for n in runtime_group.INLINED]
    return "\n\n\n".join(parts)


def group_function_names() -> frozenset[str]:
    return frozenset(n for _, names in MODEL_FUNCTIONS for n in names) | frozenset(
        runtime_group.INLINED)

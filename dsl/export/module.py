"""The exported module, assembled: constants, inlined runtime, the rendered rule, the class.

`export_module` checks names, analyses the program (`analysis`), renders each path
(`render`) and inlines the math helpers and the optimizer shell from `runtime_ops` and
`runtime_shell` (`inline`); `optimizer_class` imports the result in memory.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import linecache
import math
import sys
import types

from ..checker import ensure_valid
from ..hashing import structural_hash
from ..ir import Program
from ..latex import to_latex
from ..needs import needs
from ..printer import format_program
from ..roles import ExportNames, export_names
from .analysis import analyse
from .group import (
    closure_doc,
    features,
    group_constants,
    is_per_tensor,
    is_staged,
    render_stages,
    state_doc,
)
from .inline import (
    group_functions,
    group_methods,
    helper_source,
    shell_functions,
    shell_methods,
)
from .names import (
    DEFAULT_LR,
    RESERVED_HYPERPARAMETER_NAMES,
    ExportError,
    _beta_names,
    _check_names,
    _checked_ranges,
    _exported_program,
    _state_keys,
    default_class_name,
)
from .render import (
    FOREACH_PATH,
    PER_PARAM_PATH,
    render_eager,
    render_fused,
    render_rule,
    render_scalars,
)
from .text import _literal, _num


def export_module(program: Program, class_name: str | None = None, provenance: str = "",
                  default_lr: float | None = None, lr_note: str = "") -> str:
    """The source of a standalone module defining `class_name`, a torch optimizer that
    applies `program` (see the module doc). `provenance` says where the rule comes from (a
    seed name, a file, a database id); the structural hash is always recorded. `lr_note`
    says where `default_lr` comes from (e.g. the rate a campaign tuned); it goes into the
    docstrings. Hyperparameters are named as `dsl.roles.export_names` decides. Raises
    `dsl.RuleError` for a program that fails the checker and `ExportError` for names that
    cannot be used."""
    program = ensure_valid(program)
    if class_name is None:  # "" is a name, and refused
        class_name = default_class_name(program)
    _check_names(program, class_name)
    lr = DEFAULT_LR if default_lr is None else float(default_lr)
    if not (math.isfinite(lr) and lr >= 0):
        raise ExportError(f"default learning rate {default_lr!r} is not a number >= 0")

    original = program
    names = export_names(program, RESERVED_HYPERPARAMETER_NAMES)
    program = _exported_program(program, names)
    a = analyse(program)
    hyper_names = [n for n, _ in program.hyperparams]
    betas = _beta_names(program)
    keys = _state_keys(program)
    shash = structural_hash(original)
    source = format_program(original)
    bare = format_program(dataclasses.replace(program, doc=""))
    checked = _checked_ranges(hyper_names, betas)
    out: list[str] = [_module_doc(program, class_name, provenance, shash, lr, bare, betas,
                                  keys, names, lr_note), ""]
    out += ["import torch", "", f"__all__ = [{class_name!r}]", ""]
    out += [f"RULE_NAME = {program.name!r}",
            f"RULE_SOURCE = {_literal(source)}",
            f"PROVENANCE = {provenance or 'an optforge rule'!r}",
            f"STRUCTURAL_HASH = {shash!r}",
            f"_STATE_KEYS = {tuple(keys)!r}",
            f"_HYPER_NAMES = {tuple(hyper_names)!r}",
            f"_BETA_NAMES = {tuple(betas)!r}",
            f"_DEFAULT_BETAS = {tuple(float(program.hyper_defaults[b]) for b in betas)!r}",
            f"_RENAMED = {names.renamed!r}",
            f"_CHECKED = {checked!r}",
            "_LOW_PRECISION = (torch.bfloat16, torch.float16)", "", ""]
    if is_staged(program):
        out[-2:-2] = group_constants(program)
        out += helper_source(a.helpers)
        out += render_scalars(a, hyper_names)
        out += ["", ""]
        out += render_stages(a)
        out += ["", ""]
        if is_per_tensor(program):
            out += render_eager(a, PER_PARAM_PATH)
            out += ["", ""]
            out += render_eager(a, FOREACH_PATH)
            out += ["", ""]
        out += _render_class(program, class_name, lr, hyper_names, betas, keys, lr_note,
                             {new: old for old, new in names.renamed.items() if new},
                             staged=True)
        text = "\n".join(out).rstrip() + "\n"
        compile(text, f"<export of {program.name}>", "exec")
        return text
    out += helper_source(a.helpers)
    out += render_scalars(a, hyper_names)
    out += ["", ""]
    out += render_rule(a)
    out += ["", ""]
    out += render_eager(a, PER_PARAM_PATH)
    out += ["", ""]
    out += render_eager(a, FOREACH_PATH)
    out += ["", ""]
    out += render_fused(a)
    out += ["", ""]
    out += _render_class(program, class_name, lr, hyper_names, betas, keys, lr_note,
                         {new: old for old, new in names.renamed.items() if new})
    text = "\n".join(out).rstrip() + "\n"
    compile(text, f"<export of {program.name}>", "exec")  # a generator bug fails here, loudly
    return text


def _module_doc(program: Program, class_name: str, provenance: str, shash: str, lr: float,
                source: str, betas: list[str], keys: list[str], names: ExportNames,
                lr_note: str) -> str:
    hyper = ", ".join(f"{n}={_num(v)}" for n, v in program.hyperparams)
    lines = [(f"{class_name}: the update rule '{program.name}' as a torch optimizer, exported by "
             f"optforge."), ""]
    if program.doc:
        lines += [program.doc, ""]
    lines += [f"Provenance: {provenance or 'an optforge rule'}; structural hash {shash}.", "",
              ("Each step, for every parameter w with a gradient g (t counts that parameter's "
              "steps from 1):"), "", "    " + to_latex(program).replace("\n", "\n    "), "",
              ("The rule, in optforge's rule language (interp(x, y, a) = (1 - a) * x + a * y),"
               " as exported:"),
              "", "    " + source.rstrip("\n").replace("\n", "\n    "), "",
              f"Constructor: {class_name}(params, lr={_num(lr)}"
              + (f", {hyper}" if hyper else "") + ", *, "
              + (f"betas=None ({', '.join(betas)} as one tuple), " if betas else "")
              + "maximize=False, foreach=None, compile=False"
              + (", hessian_seed=0" if "hess" in needs(program) else "") + ")."]
    if lr_note:
        lines += [f"{lr_note}."]
    for old, new in names.renamed.items():
        why = names.reasons[old]
        if new is None:
            lines += [f"The rule's hyperparameter {old} is not an argument: {why}."]
        else:
            lines.append(f"The rule's hyperparameter {old} is exported as {new}: {why}, so "
                         f"it does not play the role torch code gives the name {old}.")
    staged = is_staged(program)
    if staged:
        lines += ["It reads " + "; ".join(features(program)) + "." + (
            "" if is_per_tensor(program) else
            " It runs in stages: values over the whole param group are computed once per "
            "group and step, between them (foreach=True runs the same per-tensor code as the "
            "default path).")]
        how = closure_doc(program, class_name)
        if how:
            lines += ["", how.replace("\n    ", "\n").rstrip("\n")]
    lines += ["State per parameter: " + (state_doc(program, keys) if staged
                                         else ", ".join(keys + ["step"]))
              + (" (the rule's state, zeros at the first step, shaped like the parameter; "
                 "step is an int)." if not program.slot_shapes else
                 " (the rule's state, zeros at the first step, shaped like the parameter "
                 "unless said otherwise; step is an int)."),
              "bfloat16 and float16 parameters keep their state in float32.",
              "", "This file needs only torch (2.1 or later)."]
    return _literal("\n".join(lines).replace("\n\n\n", "\n\n"))


def _render_class(program: Program, class_name: str, lr: float, hyper_names: list[str],
                  betas: list[str], keys: list[str], lr_note: str = "",
                  renamed_from: dict[str, str] | None = None, staged: bool = False
                  ) -> list[str]:
    defaults = dict(program.hyperparams)
    hess = staged and "hess" in needs(program)
    sig = ", ".join(["self", "params", f"lr={_num(lr)}"]
                    + [f"{n}={_num(defaults[n])}" for n in hyper_names]
                    + ["*", "betas=None", "maximize=False", "foreach=None", "compile=False"]
                    + (["hessian_seed=0"] if hess else []))
    hyper_dict = "{" + ", ".join(f"{n!r}: {n}" for n in hyper_names) + "}"
    renamed_from = renamed_from or {}

    def what(n: str) -> str:
        if n in renamed_from:
            return (f"the rule's {renamed_from[n]}, which does not play the role of torch's "
                    f"{renamed_from[n]} (see the module docstring)")
        return "hyperparameter of the rule"

    args_doc = "\n".join(f"        {n}: {what(n)} (default {_num(defaults[n])})."
                         for n in hyper_names)
    betas_doc = (f"        betas: ({', '.join(betas)}) as one tuple, as torch's optimizers "
                 f"take them.\n" if betas else "")
    doc = (f"The rule '{program.name}' as a torch optimizer (see the module docstring for "
           f"its math).\n\n    Args:\n        params: parameters or param groups, as for any "
           f"torch optimizer.\n        lr: learning rate "
           + (f"({lr_note})" if lr_note else f"(default {_num(lr)})") + ".\n"
           + (args_doc + "\n" if args_doc else "") + betas_doc +
           "        maximize: maximize the objective (the rule sees -g), as torch's "
           "optimizers.\n" +
           (_PATHS_DOC_STAGED if staged and not is_per_tensor(program) else _PATHS_DOC)
           + ("        hessian_seed: seed of the optimizer's torch.Generator that draws the\n"
              "            Rademacher vectors of the Hessian estimate.\n" if hess else "")
           + ("\n    " + closure_doc(program, class_name) if staged and closure_doc(
               program, class_name) else "") + "    ")
    init = f"self._setup(params, lr, {hyper_dict}, betas, maximize, foreach, compile)"
    if hess:
        init = f"{init}\n{{pad}}self._hessian_setup(hessian_seed)"
    methods, functions = ((group_methods(), shell_functions() + "\n\n\n" + group_functions())
                          if staged else (shell_methods(), shell_functions()))
    mangled = [n for n in hyper_names if n.startswith("__") and not n.endswith("__")]
    if not mangled:
        return [f"class {class_name}(torch.optim.Optimizer):", "    " + _literal(doc), "",
                f"    def __init__({sig}):", "        " + init.replace("{pad}", " " * 8), "",
                methods, "", "", functions]
    # Inside a class body Python renames (mangles) an argument named __x to _Class__x, and
    # Class(params, __x=...) would fail: the constructor is defined outside the class.
    private = f"_{class_name.lstrip('_')}{mangled[0]}"
    return [f"def _init({sig}):",
            f"    # {class_name}.__init__, defined here: inside the class, Python would rename",
            f"    # the argument {mangled[0]} to {private}.",
            "    " + init.replace("{pad}", " " * 4), "", "",
            f"class {class_name}(torch.optim.Optimizer):", "    " + _literal(doc), "",
            "    __init__ = _init  # see there", "",
            methods, "", "", functions]


_PATHS_DOC = ("        foreach: use torch._foreach_* ops over a group (default: when all its\n"
              "            parameters are on CUDA).\n"
              "        compile: run each step as one torch.compile'd function per group.\n")
_PATHS_DOC_STAGED = (
    "        foreach: accepted; this rule runs in stages over the whole param group, each\n"
    "            stage per tensor, so foreach runs the same code as the default path.\n"
    "        compile: run each stage as a torch.compile'd function.\n")


def optimizer_class(program: Program, class_name: str | None = None, provenance: str = "",
                    default_lr: float | None = None) -> type:
    """Export `program` and import the module in memory; returns the optimizer class. The
    module is registered in `sys.modules` (so its optimizers pickle) under a name derived
    from the structural hash."""
    source = export_module(program, class_name, provenance, default_lr)
    name = default_class_name(program) if class_name is None else class_name
    module_name = f"optforge_exported_{structural_hash(program)[:16]}_{name}"
    filename = f"<optforge export {module_name}>"
    module = types.ModuleType(module_name)
    module.__file__ = filename
    module.__loader__ = importlib.machinery.SourceFileLoader(module_name, filename)
    # let inspect/linecache (tracebacks, torch.compile diagnostics) see the generated source
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our generated code
    sys.modules[module_name] = module
    return getattr(module, name)



"""Names in an exported module: the class name, hyperparameter names, state keys, and the
names the module defines itself (which no class name may shadow)."""

from __future__ import annotations

import builtins
import dataclasses
import keyword
import re
import unicodedata

from ..checker import live_statements
from ..ir import Arg, Program
from ..roles import ExportNames
from .inline import group_function_names, helper_names, shell_names

DEFAULT_LR = 1e-3
RESERVED_HYPERPARAMETER_NAMES = frozenset(
    {"params", "self", "lr", "betas", "foreach", "compile", "maximize", "initial_lr"})
"""Names a hyperparameter cannot have: the constructor's own arguments and the param-group
keys that torch (or its lr schedulers) use."""

# Names the generated module imports or defines at top level; a class name may not shadow
# them. tests/dsl/test_export_inputs.py checks that every global an export reads or binds is
# one of these, a builtin or a dunder.
_GENERATED_NAMES = frozenset({
    "torch", "RULE_NAME", "RULE_SOURCE", "PROVENANCE", "STRUCTURAL_HASH", "_STATE_KEYS",
    "_HYPER_NAMES", "_BETA_NAMES", "_LOW_PRECISION", "_DEFAULT_BETAS", "_RENAMED", "_CHECKED",
    "_scalars", "_rule", "_update_param", "_update_foreach", "_update_fused",
    "_compiled_update", "_COMPILED", "_init", "_NS_COEFFS", "_NS_EPS", "_NS_STEPS",
    # staged modules (dsl.export.group) also define these
    "_STAGES", "_BARRIERS", "_SLOT_KINDS", "_NEEDS", "_SHAPE_READS", "_READS_HESS",
    "_READS_LOSS", "_EAGER", "_COMPILED_STAGES", "_compiled_stage"})
_MODULE_NAMES = _GENERATED_NAMES | helper_names() | shell_names() | group_function_names()
_STAGE_FUNCTION = re.compile(r"_stage[0-9]+")  # a staged module's stage functions


def is_module_name(name: str) -> bool:
    """Whether the generated module may import or define `name` at top level."""
    return name in _MODULE_NAMES or _STAGE_FUNCTION.fullmatch(name) is not None


# The generated module calls builtins (float, super, zip, isinstance, ...); a class named like
# any builtin could shadow one of them.
_BUILTIN_NAMES = frozenset(dir(builtins))


class ExportError(ValueError):
    """A program that cannot be exported as asked (an invalid class name, a hyperparameter
    whose name clashes with the optimizer's own arguments, an op that an export path has no
    code for). Invalid rules raise `dsl.RuleError` instead, with the checker's positioned
    diagnostics."""


def default_class_name(program: Program) -> str:
    """``sgd_momentum`` -> ``SgdMomentum``; names that would not be valid get a prefix or a
    suffix (``exception`` -> ``ExceptionOptimizer``, not the builtin)."""
    parts = [part for part in re.split(r"_+", program.name) if part]
    name = "".join(part[:1].upper() + part[1:] for part in parts) or "Exported"
    if not name[0].isalpha():
        name = "Rule" + name
    if _class_name_problem(name) is not None:
        name += "Optimizer"
    return name


def _class_name_problem(name: str) -> str | None:
    """Why `name` cannot name the exported class, or None when it can."""
    if not isinstance(name, str) or not name.isidentifier():
        return "is not a Python identifier (letters, digits and '_', not starting with a digit)"
    normal = unicodedata.normalize("NFKC", name)
    if normal != name:
        return f"is not in Python's normal form: Python would read it as {normal!r}"
    if keyword.iskeyword(name):
        return "is a Python keyword"
    if name.startswith("__"):
        return "starts with '__', which Python reserves for its own names (__all__, __name__)"
    if name in _BUILTIN_NAMES:
        return ("is a Python builtin, which the generated module may use (float, super, zip, "
                "isinstance, ...)")
    if is_module_name(name):
        return "is a name the generated module imports or defines itself (torch, RULE_NAME, ...)"
    return None


def _check_names(program: Program, class_name: str) -> None:
    problem = _class_name_problem(class_name)
    if problem is not None:
        raise ExportError(f"class name {class_name!r} {problem}; choose another name")
    for name, _ in program.hyperparams:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ExportError(f"hyperparameter {name!r} of rule {program.name!r} is not a "
                              f"Python identifier; rename it in the rule")
        if name in RESERVED_HYPERPARAMETER_NAMES:
            raise ExportError(
                f"hyperparameter '{name}' of rule '{program.name}' has the name of an "
                f"optimizer argument or param-group key "
                f"({', '.join(sorted(RESERVED_HYPERPARAMETER_NAMES))}); rename it in the rule")


def _beta_names(program: Program) -> list[str]:
    """beta1, beta2, ... (consecutive from beta1) among the hyperparameters."""
    names = {n for n, _ in program.hyperparams}
    out: list[str] = []
    while f"beta{len(out) + 1}" in names:
        out.append(f"beta{len(out) + 1}")
    return out


def _state_keys(program: Program) -> list[str]:
    """State dict keys: the rule's state names; "step" is the step counter's."""
    keys: list[str] = []
    for s in program.state:
        key = s
        while key == "step" or key in keys:
            key += "_"
        keys.append(key)
    return keys


def _exported_program(p: Program, names: ExportNames) -> Program:
    """`p` as the export computes it: dead statements dropped (they may read a dropped
    hyperparameter), hyperparameters renamed or dropped as `names` says."""
    live = live_statements(p)
    if len(live) != len(p.body):
        p = p.with_body(s for i, s in enumerate(p.body) if i in live)
    new = names.names

    def arg(x: Arg) -> Arg:
        return (new.get(x) or x) if isinstance(x, str) else x

    body = tuple(dataclasses.replace(s, args=tuple(arg(x) for x in s.args)) for s in p.body)
    hyper = tuple((new[h], v) for h, v in p.hyperparams if new[h] is not None)
    return dataclasses.replace(p, body=body, hyperparams=hyper,
                               returns=tuple(arg(x) for x in p.returns), origin=None)


_RANGE_LABELS = {"weight_decay": "weight_decay value", "eps": "epsilon value",
                 "momentum": "momentum value"}


def _checked_ranges(hyper_names: list[str], betas: list[str]) -> dict[str, str]:
    """Hyperparameters (by their exported names) whose values are checked as torch.optim
    checks them: "nonnegative: <label>" or "unit: <label>" (in [0, 1)). Only a name that
    kept its role keeps its conventional name, so these are exactly the checked ones."""
    out: dict[str, str] = {}
    for n in hyper_names:
        if n in _RANGE_LABELS:
            out[n] = "nonnegative:" + _RANGE_LABELS[n]
        elif re.fullmatch(r"beta[1-9][0-9]*", n) and n not in betas:
            out[n] = f"unit:{n} value"
    return out

"""The update-rule language: optimizers as small programs.

    >>> p = parse(source)              # text -> Program (RuleError on bad input)
    >>> check(p).ok                    # abstract execution: kinds, dependencies, state use
    >>> check_file(path).errors        # every error of a rule file, in source order
    >>> step, state = run_step(p, w, g, lr, t, state)   # the reference interpreter
    >>> steps, states = run_group_step(p, ws, gs, lr, t, states, context=StepContext(...))
    >>> passes_per_step(p)             # a step's cost in passes (dsl.needs.needs(p): what it reads)
    >>> structural_hash(p), canonical_hash(p), fingerprint(p)
    >>> format_program(simplify(p))    # simplified, as source text
    >>> to_latex(p)                    # the rule's math
"""

from typing import TYPE_CHECKING

from .lazy import lazy_exports

# Exports load their submodule on first use (see dsl.lazy). (`needs`, the function, is
# `dsl.needs.needs`: the name `dsl.needs` is its module's.)
_EXPORTS = {
    "FileReport": "checker",
    "Report": "checker",
    "check": "checker",
    "check_file": "checker",
    "check_source": "checker",
    "complexity": "checker",
    "ensure_valid": "checker",
    "Diagnostic": "errors",
    "RuleError": "errors",
    "did_you_mean": "errors",
    "CONTEXT_INPUTS": "context",
    "MissingContextError": "context",
    "StepContext": "context",
    "canonical_hash": "hashing",
    "fingerprint": "hashing",
    "structural_hash": "hashing",
    "init_state": "interpreter",
    "run_group_step": "interpreter",
    "run_step": "interpreter",
    "run_steps": "interpreter",
    "INPUTS": "ir",
    "Arg": "ir",
    "Program": "ir",
    "Stmt": "ir",
    "renumber_temps": "ir",
    "to_latex": "latex",
    "needs_closure": "needs",
    "passes_per_step": "needs",
    "OPS": "ops",
    "Op": "ops",
    "OpKind": "ops",
    "load": "parser",
    "load_rules": "parser",
    "parse": "parser",
    "parse_rules": "parser",
    "parse_with_errors": "parser",
    "format_program": "printer",
    "statement_count": "printer",
    "simplify": "simplifier",
    "SlotShape": "slots",
}

if TYPE_CHECKING:
    from .checker import (
        FileReport,
        Report,
        check,
        check_file,
        check_source,
        complexity,
        ensure_valid,
    )
    from .context import CONTEXT_INPUTS, MissingContextError, StepContext
    from .errors import Diagnostic, RuleError, did_you_mean
    from .hashing import canonical_hash, fingerprint, structural_hash
    from .interpreter import init_state, run_group_step, run_step, run_steps
    from .ir import INPUTS, Arg, Program, Stmt, renumber_temps
    from .latex import to_latex
    from .needs import needs_closure, passes_per_step
    from .ops import OPS, Op, OpKind
    from .parser import load, load_rules, parse, parse_rules, parse_with_errors
    from .printer import format_program, statement_count
    from .simplifier import simplify
    from .slots import SlotShape


__all__ = [
    "CONTEXT_INPUTS", "INPUTS", "OPS", "Arg", "Diagnostic", "FileReport", "MissingContextError",
    "Op", "OpKind", "Program", "Report", "RuleError", "SlotShape", "StepContext", "Stmt",
    "canonical_hash", "check", "check_file", "check_source", "complexity", "did_you_mean",
    "ensure_valid", "fingerprint", "format_program", "init_state", "load", "load_rules",
    "needs_closure", "parse", "parse_rules", "parse_with_errors", "passes_per_step",
    "renumber_temps", "run_group_step", "run_step", "run_steps", "simplify", "statement_count",
    "structural_hash", "to_latex",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

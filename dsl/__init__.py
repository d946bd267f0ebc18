"""The update-rule language: optimizers as small programs.

    >>> p = parse(source)              # text -> Program (RuleError on bad input)
    >>> check(p).ok                    # abstract execution: kinds, shapes, dependencies
    >>> step, state = run_step(p, w, g, lr, t, state)   # the reference interpreter
    >>> structural_hash(p), canonical_hash(p), fingerprint(p)
    >>> format_program(simplify(p))    # simplified, as source text
"""

from .errors import Diagnostic, RuleError
from .interpreter import init_state, run_step, run_steps
from .ir import INPUTS, Arg, Program, Stmt, renumber_temps
from .ops import OPS, Op, OpKind
from .parser import load, load_rules, parse, parse_rules
from .printer import format_program, statement_count

__all__ = [
    "Arg", "Diagnostic", "INPUTS", "OPS", "Op", "OpKind", "Program", "RuleError", "Stmt",
    "format_program", "init_state", "load", "load_rules", "parse", "parse_rules",
    "renumber_temps", "run_step", "run_steps", "statement_count",
]

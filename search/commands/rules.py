"""`optforge check FILE...` and `optforge simplify FILE`: the language from the shell."""

from __future__ import annotations

import sys

from optforge import dsl

from ..errors import UserError


def register(sub) -> None:
    p = sub.add_parser("check", help="check rule files: one line per valid rule, and every "
                                     "error (positioned, in source order) and warning")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=run_check)

    p = sub.add_parser("simplify", help="print the simplified rule as source text")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=run_simplify)


def run_check(args) -> int:
    """Every error of every file, in source order (then its warnings), and a count of the
    errors when there is more than one; one line per valid rule on stdout."""
    n_errors = 0
    files_with_errors = 0
    for path in args.files:
        report = dsl.check_file(path)
        for rule in report.valid:
            n = dsl.statement_count(rule)
            print(f"{rule.name}: {n} statement{'' if n == 1 else 's'}, "
                  f"complexity {dsl.complexity(rule)}")
        for d in report.errors + report.warnings:
            print(d.format(), file=sys.stderr)
        n_errors += len(report.errors)
        files_with_errors += not report.ok
    if n_errors > 1:
        where = f" in {files_with_errors} files" if files_with_errors > 1 else ""
        print(f"{n_errors} errors{where}", file=sys.stderr)
    return 1 if n_errors else 0


def run_simplify(args) -> int:
    from optforge.dsl.simplifier import simplify_bounded

    rules = dsl.load_rules(args.file)
    if len(rules) != 1:
        raise UserError(f"{args.file} holds {len(rules)} rules; simplify takes a file with one")
    rule = dsl.ensure_valid(rules[0])
    result = simplify_bounded(rule)
    if result.bound_hit is not None:
        print(f"optforge simplify: note: simplification bound hit ({result.bound_hit}); "
              f"printing the rule unsimplified", file=sys.stderr)
    sys.stdout.write(dsl.format_program(result.program))
    return 0

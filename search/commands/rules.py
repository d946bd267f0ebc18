"""`optforge check FILE...` and `optforge simplify FILE`: the language from the shell."""

from __future__ import annotations

import sys

import dsl
from dsl.simplifier import simplify_bounded

from ..errors import UserError


def register(sub) -> None:
    p = sub.add_parser("check", help="check rule files: one line per valid rule, positioned "
                                     "errors (and warnings) otherwise")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=run_check)

    p = sub.add_parser("simplify", help="print the simplified rule as source text")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=run_simplify)


def run_check(args) -> int:
    status = 0
    for path in args.files:
        try:
            rules = dsl.load_rules(path)
        except dsl.RuleError as e:
            print(e, file=sys.stderr)
            status = 1
            continue
        for rule in rules:
            report = dsl.check(rule)
            if report.ok:
                n = dsl.statement_count(rule)
                print(f"{rule.name}: {n} statement{'' if n == 1 else 's'}, "
                      f"complexity {dsl.complexity(rule)}")
            else:
                status = 1
                for d in report.errors:
                    print(d.format(), file=sys.stderr)
            for d in report.warnings:
                print(d.format(), file=sys.stderr)
    return status


def run_simplify(args) -> int:
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

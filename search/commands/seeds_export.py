"""`optforge seeds [--json]` and `optforge export SEED|FILE|ID --out FILE.py`.

`export` resolves its argument with `seeds.resolve_rule` (the one resolver of every command):
an existing file is a rule file, then a seed name, then a program in the database (`--db`):
its id or a structural-hash prefix.

The exported constructor's default `lr`: a seed's or rule file's own (its `lr:` line), and
for a stored program the rate its decisive evaluation tuned (`decisive_lr`): the evaluation
at the stage where winners are chosen (stage 2, else stage 1), never the held-out validation
(stage 3, whose rate the docstring mentions). `--lr` overrides both.

torch, dsl, seeds and store are imported inside the functions: every command's module is
imported to build the parser, and `optforge --help` must not pay for torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..files import write_text_atomically

if TYPE_CHECKING:
    from optforge.seeds import ResolvedRule


def register(sub) -> None:
    p = sub.add_parser("seeds", help="list the seed optimizers: name, statements, "
                                     "hyperparameters with defaults, citation")
    p.add_argument("--json", action="store_true", help="print one JSON array")
    p.set_defaults(func=run_seeds)

    p = sub.add_parser("export", help="write a rule as a standalone torch optimizer module "
                                      "(imports only torch)")
    p.add_argument("rule", metavar="SEED|FILE|ID",
                   help="a seed name (see `optforge seeds`), a rule file holding one rule, or "
                        "a program in the database (its id or a structural-hash prefix)")
    p.add_argument("--db", help="database URL for a program id (default: $OPTFORGE_DB or "
                                "./optforge.db)")
    p.add_argument("--out", required=True, metavar="FILE.py", help="the module to write")
    p.add_argument("--class-name", metavar="NAME",
                   help="the optimizer class's name (default: from the rule's name, "
                        "e.g. sgd_momentum -> SgdMomentum)")
    p.add_argument("--lr", type=float, metavar="RATE",
                   help="the constructor's default learning rate (default: a seed's own; for "
                        "a stored program, the rate its campaign tuned at the stage where "
                        "winners are chosen)")
    p.add_argument("--force", action="store_true", help="overwrite FILE.py if it exists")
    p.set_defaults(func=run_export)


# ---- seeds ----------------------------------------------------------------------------------

def seed_record(name: str) -> dict:
    from optforge import dsl, seeds

    info = seeds.seed_info(name)
    p = info.program
    return {
        "name": name,
        "citation": info.citation,
        "year": info.year,
        "reference": info.reference,
        "lr": info.lr,
        "statements": dsl.statement_count(p),
        "complexity": dsl.complexity(p),
        "state": list(p.state),
        "hyperparameters": {n: v for n, v in p.hyperparams},
    }


def run_seeds(args) -> int:
    from optforge import seeds

    records = [seed_record(name) for name in seeds.seed_names()]
    if args.json:
        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    rows = [(r["name"], str(r["statements"]),
             " ".join([f"lr={_g(r['lr'])}"] + [f"{k}={_g(v)}"
                                               for k, v in r["hyperparameters"].items()]),
             r["citation"]) for r in records]
    header = ("NAME", "STMTS", "HYPERPARAMETERS (defaults)", "CITATION")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(3)]
    for row in [header] + rows:
        sys.stdout.write("  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]),
                                    row[2].ljust(widths[2]), row[3]]).rstrip() + "\n")
    return 0


def _g(v) -> str:
    return "?" if v is None else f"{v:g}"


# ---- export ---------------------------------------------------------------------------------

def resolve_rule(arg: str, db: str | None = None) -> ResolvedRule:
    """The rule `arg` names (`seeds.resolve_rule`, the one resolver, and its precedence),
    a stored program in the database `db` included. `UserError` for a name that is nothing,
    `dsl.RuleError` for a bad file."""
    from optforge import seeds

    try:
        return seeds.resolve_rule(arg, stored=lambda text: _stored_rule(text, db))
    except seeds.UnknownRule as e:
        raise UserError(str(e)) from None


def _stored_rule(text: str, db: str | None) -> ResolvedRule:
    from optforge.seeds import ResolvedRule
    from optforge.store import Store
    from optforge.store.errors import StoreError

    from optforge import dsl, seeds

    try:
        with Store(db, create=False) as store:
            record = store.find_program(text)
            evaluations = store.evaluations(program=record.id)
    except StoreError as e:
        raise UserError(str(e)) from None
    program = dsl.parse(record.source, f"program {record.id}")
    provenance = f"optforge program #{record.id}"
    tuned = decisive_lr(evaluations)
    if tuned is None:
        return ResolvedRule(program, provenance, seeds.rule_metadata(program).lr)
    return ResolvedRule(program, provenance, tuned[0], tuned[1])


_SIGNIFICANT = 3  # a tuned rate is a geometric mean over tasks of grid points: 3 digits say it


def _rounded(rate: float) -> float:
    return float(f"{rate:.{_SIGNIFICANT}g}")


def _usable_rate(e: Any) -> bool:
    return (e.best_lr is not None and math.isfinite(e.best_lr) and e.best_lr > 0
            and e.finite)


def decisive_lr(evaluations: list[Any]) -> tuple[float, str] | None:
    """The learning rate the decisive evaluation of a program tuned, rounded to 3 significant
    digits, and a sentence saying where it comes from; None when no evaluation tuned one.

    The decisive evaluation is the program's evaluation at the stage where winners are chosen:
    stage 2 if it has one, else stage 1 (the latest campaign's, when several evaluated it).
    Held-out validation (stage 3) also tunes a rate, on other tasks; it is never the default
    (it is never selected on) but is named beside it when the same campaign has one."""
    from optforge.search.stages import STAGE1, STAGE2, STAGE_VALIDATION

    for stage in (STAGE2, STAGE1):
        found = [e for e in evaluations if e.stage == stage and _usable_rate(e)]
        if found:
            break
    else:
        return None
    e = max(found, key=lambda e: (e.campaign_id or 0, e.id))
    lr = _rounded(e.best_lr)
    where = f"campaign {e.campaign_id}" if e.campaign_id is not None else "no campaign"
    note = f"lr defaults to {lr:g}, the rate tuned on `{e.suite}` (stage {stage}) in {where}"
    held_out = [v for v in evaluations if v.stage == STAGE_VALIDATION
                and v.campaign_id == e.campaign_id and _usable_rate(v)]
    if held_out:
        v = max(held_out, key=lambda v: v.id)
        note += (f"; validation on the held-out `{v.suite}` tasks (stage {STAGE_VALIDATION}) "
                 f"tuned {_rounded(v.best_lr):g}")
    return lr, note


def export_rule(resolved: ResolvedRule, out: str, class_name: str | None, force: bool) -> str:
    """Write the exported module to `out` (atomically); returns the class name. Writes
    nothing when the rule fails the checker (`dsl.RuleError`) or a name is unusable."""
    from optforge.dsl.export import ExportError, default_class_name, export_module

    if os.path.isdir(out):
        raise UserError(f"--out {out} is a directory; give a file name such as my_optim.py")
    if os.path.exists(out) and not force:
        raise UserError(f"{out} exists; pass --force to overwrite it")
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise UserError(f"cannot write {out}: directory {directory} does not exist")
    name = default_class_name(resolved.program) if class_name is None else class_name
    try:
        source = export_module(resolved.program, name, resolved.provenance,
                               resolved.default_lr, resolved.lr_note)
    except ExportError as e:
        raise UserError(str(e)) from None
    try:
        write_text_atomically(out, source)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    return name


def run_export(args) -> int:
    from optforge import dsl

    resolved = resolve_rule(args.rule, args.db)
    if args.lr is not None:
        if not (math.isfinite(args.lr) and args.lr >= 0):
            raise UserError(f"--lr {args.lr:g} is not a learning rate; give a number >= 0")
        resolved = dataclasses.replace(resolved, default_lr=args.lr,
                                       lr_note=f"lr defaults to {args.lr:g}, as given to "
                                               f"`optforge export --lr`")
    name = export_rule(resolved, args.out, args.class_name, args.force)
    module = os.path.splitext(os.path.basename(args.out))[0]
    p = resolved.program
    print(f"wrote {args.out}: class {name}, rule '{p.name}' ({dsl.statement_count(p)} "
          f"statements), from {resolved.provenance}")
    if resolved.lr_note:
        print(resolved.lr_note)
    from optforge.dsl.export import RESERVED_HYPERPARAMETER_NAMES
    from optforge.dsl.roles import export_names

    names = export_names(p, RESERVED_HYPERPARAMETER_NAMES)
    for old, new in names.renamed.items():
        what = "dropped" if new is None else f"exported as {new}"
        print(f"hyperparameter {old} {what}: {names.reasons[old]}")
    print(f"use it as: from {module} import {name}; opt = {name}(model.parameters())")
    return 0

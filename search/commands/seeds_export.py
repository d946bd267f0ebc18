"""`optforge seeds [--json]` and `optforge export SEED|FILE|ID --out FILE.py`.

`export` resolves its argument with `resolve_rule`: an existing file is a rule file, then a
seed name, then a program in the database (`--db`): its id or a structural-hash prefix.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
from dataclasses import dataclass

import dsl
import seeds
from dsl.export import ExportError, default_class_name, export_module

from ..errors import UserError


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
    p.add_argument("--force", action="store_true", help="overwrite FILE.py if it exists")
    p.set_defaults(func=run_export)


# ---- seeds ----------------------------------------------------------------------------------

def seed_record(name: str) -> dict:
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

@dataclass(frozen=True)
class ResolvedRule:
    program: dsl.Program
    provenance: str
    default_lr: float | None


def resolve_rule(arg: str, db: str | None = None) -> ResolvedRule:
    """A rule file (if `arg` names an existing file), else a seed, else a stored program (an
    id or a hash prefix). Raises `UserError` for anything else, and `dsl.RuleError` for a
    file that does not parse."""
    if os.path.isdir(arg):
        raise UserError(f"{arg} is a directory; give a rule file or a seed name")
    if os.path.exists(arg):
        rules = dsl.load_rules(arg)
        if len(rules) != 1:
            names = ", ".join(r.name for r in rules)
            raise UserError(f"{arg} holds {len(rules)} rules ({names}); export takes a file "
                            f"with one rule")
        program = rules[0]
        return ResolvedRule(program, f"rule file {os.path.basename(arg)}",
                            seeds.rule_metadata(program).lr)
    names = seeds.seed_names()
    if arg in names:
        info = seeds.seed_info(arg)
        return ResolvedRule(info.program, f"optforge seed '{arg}' (seeds/{arg}.rule)", info.lr)
    if arg.endswith(".rule") or os.sep in arg or "/" in arg:
        raise UserError(f"no such file: {arg}")
    if arg.isdigit() or (len(arg) >= 4 and all(c in "0123456789abcdef" for c in arg)):
        return _stored_rule(arg, db)
    hint = dsl.did_you_mean(arg, names)
    raise UserError(f"'{arg}' is neither a rule file nor a seed; " + (f"{hint} " if hint else "")
                    + "`optforge seeds` lists the seeds")


def _stored_rule(text: str, db: str | None) -> ResolvedRule:
    from store import Store
    from store.errors import StoreError
    try:
        with Store(db, create=False) as store:
            record = store.find_program(text)
    except StoreError as e:
        raise UserError(str(e)) from None
    program = dsl.parse(record.source, f"program {record.id}")
    return ResolvedRule(program, f"optforge program #{record.id}",
                        seeds.rule_metadata(program).lr)


def export_rule(resolved: ResolvedRule, out: str, class_name: str | None, force: bool) -> str:
    """Write the exported module to `out` (atomically); returns the class name. Writes
    nothing when the rule fails the checker (`dsl.RuleError`) or a name is unusable."""
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
                               resolved.default_lr)
    except ExportError as e:
        raise UserError(str(e)) from None
    try:
        _write_atomically(out, directory, source)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    return name


def _write_atomically(path: str, directory: str, text: str) -> None:
    """Write `text` to a new file in `directory`, then rename it over `path`: readers never see
    half a module. The file gets the mode `open(path, "w")` would give it: an existing file's
    own mode, else 0o666 less the umask (0o644 under the usual 022), not mkstemp's 0o600."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    tmp = os.path.join(directory, f".optforge-export-{secrets.token_hex(8)}.py")
    # O_EXCL: never write into a file that is already there; the kernel applies the umask to
    # 0o666, as it does for open(..., "w")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_export(args) -> int:
    resolved = resolve_rule(args.rule, args.db)
    name = export_rule(resolved, args.out, args.class_name, args.force)
    module = os.path.splitext(os.path.basename(args.out))[0]
    p = resolved.program
    print(f"wrote {args.out}: class {name}, rule '{p.name}' ({dsl.statement_count(p)} "
          f"statements), from {resolved.provenance}")
    print(f"use it as: from {module} import {name}; opt = {name}(model.parameters())")
    return 0

"""Querying the results database from the shell:

    optforge campaigns [--json]
    optforge top [-n N] [--campaign C] [--suite S] [--stage K] [--failures] [--json]
    optforge show ID [--campaign C] [--suite S] [--json]
    optforge lineage ID --out FILE [--descendants] [--campaign C]

Every subcommand takes ``--db URL`` (default: `$OPTFORGE_DB`, else ``sqlite:///optforge.db``).
These commands only read: a missing database is an error, never a new empty file. An ID is
a program id or a prefix of its structural hash. A database this user may not write (a
read-only file or directory) is read without writing anything beside it (`store.engine`);
a damaged one, or any other error of the database, is a one-line error naming it.

A campaign's best, its evaluation count and a program's decisive evaluation are defined once,
in `search.campaign_view`; every score printed names its suite.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from optforge.store import (
    ENV_VAR,
    LINEAGE_FORMATS,
    EvaluationRecord,
    ProgramRecord,
    Store,
    StoreError,
    write_lineage,
)
from optforge.store.engine import describe_location, store_error
from sqlalchemy.exc import DBAPIError

from .. import campaign_view as view
from ..errors import UserError
from ..stages import STAGE_VALIDATION
from .show_forms import show_forms, step_cost
from .validate_cmd import format_validation, stored_validation


def register(sub) -> None:
    p = sub.add_parser("campaigns", help="list the campaigns in the database")
    _common(p, json_flag=True)
    p.set_defaults(func=_guard(run_campaigns))

    p = sub.add_parser("top", help="the best programs, one row each, where winners are "
                                   "chosen")
    p.add_argument("-n", type=_positive_int, default=10, metavar="N",
                   help="how many programs (default 10)")
    p.add_argument("--campaign", metavar="C", help="campaign name or id (default: all)")
    p.add_argument("--suite", metavar="S",
                   help="rank on this suite instead (default: where winners are chosen: "
                        "the stage-2 suite, else the stage-1 suite)")
    p.add_argument("--stage", type=int, metavar="K",
                   help="rank on this stage instead (0 screening, 1, 2, 3 validation)")
    p.add_argument("--failures", action="store_true",
                   help="list failed evaluations too (diverged, NaN, time-out, error)")
    _common(p, json_flag=True)
    p.set_defaults(func=_guard(run_top))

    p = sub.add_parser("show", help="a program: its decisive score, source, simplified "
                                    "source, LaTeX, evaluations with per-task scores, "
                                    "held-out validations, parents")
    p.add_argument("id", metavar="ID", help="program id or structural hash prefix")
    p.add_argument("--campaign", metavar="C", help="only evaluations of this campaign")
    p.add_argument("--suite", metavar="S",
                   help="show its score on this suite first (default: where its campaign "
                        "chooses winners, else its latest stage-1 or stage-2 evaluation)")
    _common(p, json_flag=True)
    p.set_defaults(func=_guard(run_show))

    p = sub.add_parser("lineage", help="draw or export a program's ancestry")
    p.add_argument("id", metavar="ID", help="program id or structural hash prefix")
    p.add_argument("--out", required=True, metavar="FILE",
                   help=f"output file: {', '.join(LINEAGE_FORMATS)}")
    p.add_argument("--descendants", action="store_true", help="include descendants too")
    p.add_argument("--campaign", metavar="C", help="only edges recorded in this campaign")
    _common(p, json_flag=False)
    p.set_defaults(func=_guard(run_lineage))


def _common(p: argparse.ArgumentParser, *, json_flag: bool) -> None:
    p.add_argument("--db", metavar="URL",
                   help=f"database URL (default: ${ENV_VAR}, else sqlite:///optforge.db)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") \
            from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Store errors are user-facing one-liners (a missing database, an unknown id), and so
    is whatever the database driver raises while a listing reads (a damaged page met
    half-way, a file that cannot be read): one line naming the database."""
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except StoreError as e:
            raise UserError(str(e)) from None
        except (DBAPIError, sqlite3.Error) as e:
            raise UserError(str(store_error(e, describe_location(args.db)))) from None
    return run


def _open(args: argparse.Namespace) -> Store:
    return Store(args.db, create=False)


# ---- formatting helpers --------------------------------------------------------------------

def _fmt(x: float | None, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    return format(x, spec) if math.isfinite(x) else str(x)


def _plain(obj: Any) -> Any:
    """JSON-ready data: non-finite floats become the strings "NaN", "Infinity",
    "-Infinity" (strict JSON has no spelling for them), datetimes ISO 8601 text."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _print_json(data: Any) -> None:
    json.dump(_plain(data), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _program_json(p: ProgramRecord) -> dict:
    return {"id": p.id, "name": p.name, "structural_hash": p.structural_hash,
            "canonical_hash": p.canonical_hash, "fingerprint": p.fingerprint,
            "statements": p.statements, "complexity": p.complexity, "source": p.source,
            "created_at": p.created_at}


def _evaluation_json(e: EvaluationRecord) -> dict:
    return {"id": e.id, "campaign_id": e.campaign_id, "suite": e.suite, "stage": e.stage,
            "status": e.status, "score": e.score, "best_lr": e.best_lr,
            "wall_time": e.wall_time, "error": e.error, "worker": e.worker, "key": e.key,
            "created_at": e.created_at,
            "tasks": {t.task: {"status": t.status, "score": t.score, "loss": t.loss,
                               "best_lr": t.best_lr, "wall_time": t.wall_time,
                               "metrics": dict(t.metrics)} for t in e.tasks}}


# ---- campaigns -----------------------------------------------------------------------------

def validation_score(st, campaign_id: int) -> tuple[float | None, str | None]:
    """The score of the campaign's latest held-out validation (its winner's), and the suite."""
    evals = [e for e in st.evaluations(campaign=campaign_id, stage=STAGE_VALIDATION)]
    if not evals:
        return None, None
    last = max(evals, key=lambda e: e.id)
    return last.score, last.suite


def run_campaigns(args: argparse.Namespace) -> int:
    with _open(args) as st:
        rows = []
        for c in st.campaigns():
            stats = st.campaign_stats(c.id)
            rows.append((stats, view.evaluation_counts(stats.suites),
                         view.campaign_best(st, c), validation_score(st, c.id)))
    if args.json:
        _print_json([{"id": s.campaign.id, "name": s.campaign.name,
                      "status": s.campaign.status, "created_at": s.campaign.created_at,
                      "updated_at": s.campaign.updated_at,
                      "finished_at": s.campaign.finished_at,
                      **counts.to_json(), "programs": s.programs,
                      "by_status": dict(s.by_status),
                      "best": best.to_json() if best else None,
                      "validation": {"score": held_out[0], "suite": held_out[1]},
                      "total_wall_time": s.total_wall_time,
                      "suites": [{"suite": x.suite, "stage": x.stage,
                                  "evaluations": x.evaluations} for x in s.suites],
                      "config": dict(s.campaign.config)}
                     for s, counts, best, held_out in rows])
        return 0
    if not rows:
        print("no campaigns yet", file=sys.stderr)
        return 0
    _table(["id", "name", "status", "evaluations", "screenings", "validations", "programs",
            "best", "validation", "created (UTC)"],
           [[str(s.campaign.id), s.campaign.name, s.campaign.status, str(counts.budgeted),
             str(counts.screenings), str(counts.validations), str(s.programs),
             best.describe() if best else "-",
             "-" if held_out[0] is None else view.scored(*held_out),
             s.campaign.created_at.strftime("%Y-%m-%d %H:%M")]
            for s, counts, best, held_out in rows])
    print("\nevaluations: stages 1 and 2, what the budget counts; screenings (stage 0) and "
          "held-out validations (stage 3) are apart.\nbest: the winner, where winners are "
          "chosen (stage 2, else stage 1).")
    return 0


# ---- top -----------------------------------------------------------------------------------

def run_top(args: argparse.Namespace) -> int:
    with _open(args) as st:
        campaign = st.get_campaign(args.campaign) if args.campaign is not None else None
        camp_id = campaign.id if campaign else None
        suite, stage, why = args.suite, args.stage, "as asked"
        if suite is None and stage is None:
            scope = view.default_scope(st, campaign)
            if scope is not None:
                suite, stage, why = scope.suite, scope.stage, "where winners are chosen"
        elif suite is None:  # a stage: its commonest suite (scores of suites never mix)
            at = [x for x in st.suites(campaign=camp_id) if x.stage == stage]
            suite = max(at, key=lambda x: (x.evaluations, x.suite)).suite if at else None
        elif stage is None:  # a suite: its furthest stage (2, 1, screening 0, validation 3)
            stages = {x.stage for x in st.suites(campaign=camp_id) if x.suite == suite}
            stage = next((k for k in (2, 1, 0, STAGE_VALIDATION) if k in stages), None)
        ranked = st.ranking(args.n, campaign=camp_id, suite=suite, stage=stage,
                            failures=args.failures) \
            if suite is not None and stage is not None else []
    if args.json:
        _print_json([{"rank": r.rank, "score": r.score, "suite": r.evaluation.suite,
                      "stage": r.evaluation.stage, "program": _program_json(r.program),
                      "evaluation": _evaluation_json(r.evaluation)} for r in ranked])
        return 0
    scope_name = f"campaign {campaign.name}" if campaign else "all campaigns"
    where = "" if suite is None else f" on {suite}" + (
        "" if stage is None else f", stage {stage}")
    if not ranked:
        print(f"no scored evaluations in {scope_name}{where}", file=sys.stderr)
        return 0
    print(f"top {len(ranked)} in {scope_name}{where} ({why}); one row per program: its "
          f"best {'evaluation' if args.failures else 'ok evaluation'} there")
    _table(["rank", "id", "name", f"score on {suite}", "complexity", "stmts", "status",
            "hash"],
           [[str(r.rank), str(r.program.id), r.program.name, _fmt(r.score),
             str(r.program.complexity), str(r.program.statements), r.evaluation.status,
             r.program.structural_hash[:12]] for r in ranked])
    return 0


# ---- show ----------------------------------------------------------------------------------

def run_show(args: argparse.Namespace) -> int:
    with _open(args) as st:
        prog = st.find_program(args.id)
        camp = st.get_campaign(args.campaign).id if args.campaign is not None else None
        evals = st.evaluations(program=prog.id, campaign=camp)
        decisive, why = view.decisive_evaluation(st, evals, suite=args.suite)
        parents = st.parents(prog.id)
        parent_names = {e.parent_id: st.get_program(e.parent_id).name for e in parents}
        children = st.children(prog.id)
    simplified, latex, why_not = show_forms(prog.source)
    cost = step_cost(prog.source)
    validations = [e for e in evals if e.stage == STAGE_VALIDATION]
    if args.json:
        _print_json({"program": _program_json(prog), "simplified_source": simplified,
                     "latex": latex,
                     "passes_per_step": cost[0] if cost else None,
                     "reads": cost[1] if cost else None,
                     "decisive": None if decisive is None else {
                         "evaluation": decisive.id, "score": decisive.score,
                         "suite": decisive.suite, "stage": decisive.stage,
                         "status": decisive.status, "campaign_id": decisive.campaign_id,
                         "why": why},
                     "evaluations": [_evaluation_json(e) for e in evals],
                     "validations": [{"evaluation": e.id, "campaign_id": e.campaign_id,
                                      **stored_validation(e, prog.name)}
                                     for e in validations],
                     "parents": [{"id": e.parent_id, "name": parent_names[e.parent_id],
                                  "mutation": e.mutation, "campaign_id": e.campaign_id}
                                 for e in parents],
                     "children": sorted({e.child_id for e in children})})
        return 0
    print(f"program {prog.id}: {prog.name}")
    if decisive is None:
        print(f"  score: none ({why})")
    else:
        from optforge.evaluators import Status  # (show loads the language, and torch, anyway)

        status = "" if decisive.status == Status.OK else f", {decisive.status}"
        print(f"  score: {view.scored(decisive.score, decisive.suite)} (stage "
              f"{decisive.stage}{status}, evaluation {decisive.id}: {why})")
    print(f"  structural hash {prog.structural_hash}")
    print(f"  canonical hash  {prog.canonical_hash}")
    print(f"  fingerprint     {prog.fingerprint}")
    print(f"  {prog.statements} statement{'' if prog.statements == 1 else 's'}, "
          f"complexity {prog.complexity}")
    if cost is not None:
        reads = f" (reads {', '.join(cost[1])})" if cost[1] else ""
        print(f"  cost: {cost[0]} pass{'' if cost[0] == 1 else 'es'} of the model a step"
              f"{reads}")
    print("\nsource:")
    print(_indent(prog.source))
    if why_not is not None:
        print(f"\n(simplified form and LaTeX unavailable: {why_not})")
    else:
        print("\nsimplified:")
        if simplified.startswith("(not simplified"):
            print(f"    {simplified}")
        else:
            print(_indent(simplified) if simplified.strip() != prog.source.strip()
                  else "    (already in simplest form)")
        print("\nLaTeX:")
        print(_indent(latex))
    print("\nparents:" if parents else "\nparents: none (a seed)")
    for e in parents:
        where = f" in campaign {e.campaign_id}" if e.campaign_id is not None else ""
        print(f"    {e.parent_id} {parent_names[e.parent_id]} --{e.mutation}-->{where}")
    if children:
        print(f"children: {', '.join(str(i) for i in sorted({e.child_id for e in children}))}")
    if decisive is not None and decisive.tasks:
        print(f"\nper-task scores (evaluation {decisive.id}, suite {decisive.suite}, stage "
              f"{decisive.stage}):")
        _table(["task", "status", f"score on {decisive.suite}", "loss", "best lr"],
               [[t.task, t.status, _fmt(t.score), _fmt(t.loss), _fmt(t.best_lr, ".3g")]
                for t in decisive.tasks])
    if not evals:
        print("\nevaluations: none")
        return 0
    print("\nall evaluations (* the decisive one; stage 0 screening, 3 held-out "
          "validation):")
    _table(["", "id", "campaign", "suite", "stage", "status", "score", "best lr", "wall s",
            "worker"],
           [["*" if decisive is not None and e.id == decisive.id else "", str(e.id),
             "-" if e.campaign_id is None else str(e.campaign_id), e.suite,
             f"{e.stage} (validation)" if e.stage == STAGE_VALIDATION else str(e.stage),
             e.status, _fmt(e.score), _fmt(e.best_lr, ".3g"),
             _fmt(e.wall_time, ".1f"), e.worker or "-"] for e in evals])
    for e in evals:
        if e.error:
            print(f"evaluation {e.id} error: {e.error.strip().splitlines()[0]}")
    for e in validations:
        where = f", campaign {e.campaign_id}" if e.campaign_id is not None else ""
        print()
        print(format_validation(stored_validation(e, prog.name),
                                f"held-out validation (evaluation {e.id}{where})"))
    return 0


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())


# ---- lineage -------------------------------------------------------------------------------

def run_lineage(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in LINEAGE_FORMATS:
        raise UserError(f"cannot write {out.name!r}: the file name must end in one of "
                        f"{', '.join(LINEAGE_FORMATS)}")
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: directory {out.parent} does not exist")
    with _open(args) as st:
        prog = st.find_program(args.id)
        camp = st.get_campaign(args.campaign).id if args.campaign is not None else None
        graph = st.lineage(prog.id, descendants=args.descendants, campaign=camp)
    try:
        write_lineage(graph, out)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"wrote {out} ({graph.number_of_nodes()} programs, "
          f"{graph.number_of_edges()} edges)")
    return 0

"""`optforge report [CAMPAIGN] --out FILE.html [--db URL]`: a campaign as one
self-contained HTML page (`search.report`), which opens offline.

CAMPAIGN is a campaign's name or id; by default the most recently created campaign in the
database. The command only reads the database (a missing one is an error, never a new
empty file) and writes the page atomically: a temporary file beside `FILE.html`, renamed
over it, with the mode ``open(FILE, "w")`` would give it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optforge.store import ENV_VAR, CampaignRecord, NotFound, Store, StoreError

from ..errors import UserError
from ..files import write_text_atomically


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="a campaign as one self-contained HTML page",
        description="Write a campaign's report as one HTML file that opens offline: the best "
                    "score against evaluations on each stage (beside the random-search "
                    "control, when the database has one), the Pareto front of score against "
                    "complexity, the winner's lineage from its seed with each mutation's "
                    "source diff, its per-task scores and held-out validation beside AdamW, "
                    "Lion and SGD with momentum, its simplified source and LaTeX, and the "
                    "campaign's statistics.")
    p.add_argument("campaign", nargs="?", metavar="CAMPAIGN",
                   help="campaign name or id (default: the most recent campaign)")
    p.add_argument("--out", required=True, metavar="FILE.html", help="the page to write")
    p.add_argument("--db", metavar="URL",
                   help=f"database URL (default: ${ENV_VAR}, else sqlite:///optforge.db)")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from ..report import build_page, gather

    out = Path(args.out)
    check_out(out)
    try:
        with Store(args.db, create=False) as store:
            campaign = pick_campaign(store, args.campaign)
            data = gather(store, campaign)
    except StoreError as e:
        raise UserError(str(e)) from None
    page = build_page(data)
    try:
        write_text_atomically(out, page)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    w = data.winner
    winner = "no winner yet" if w is None else \
        f"winner #{w.program.id} {w.program.name}, {_score(w.score)} on {w.suite} (stage {w.stage})"
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): campaign {campaign.name} "
          f"(id {campaign.id}), {winner}")
    return 0


def check_out(out: Path) -> Path:
    """The directory the page goes to; a `UserError` before anything is read when the page
    cannot be written there."""
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as report.html")
    directory = out.absolute().parent
    if not directory.is_dir():
        raise UserError(f"cannot write {out}: directory {directory} does not exist")
    return directory


def pick_campaign(store: Store, ref: str | None) -> CampaignRecord:
    """The campaign named by `ref` (a name or an id), else the most recent one."""
    if ref is not None:
        try:
            return store.get_campaign(ref)
        except NotFound as e:
            raise UserError(f"{e} in {store.display_url}") from None
    campaigns = store.campaigns()
    if not campaigns:
        raise UserError(f"no campaigns in {store.display_url}: run `optforge run` first, or "
                        "pass --db URL")
    return max(campaigns, key=lambda c: (c.created_at, c.id))


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"

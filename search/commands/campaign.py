"""`optforge run [CONFIG.toml]` and `optforge resume CAMPAIGN`."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import contextmanager

from ..config import load_config
from ..errors import UserError
from .cluster_args import add_pool_arguments, open_pool

# Campaigns a bare `optforge resume` may pick: stopped by Ctrl-C, killed, or failed.
RESUMABLE = ("paused", "interrupted", "failed")


# The default campaign's cost, measured: `optforge run` on the embedded defaults, 2 workers
# on the 2-core CPU development machine, 2026-12-02 (336 s, population-batched evaluation).
DEFAULT_CAMPAIGN_TIME = "about 6 minutes on a 2-core CPU machine"


def register(sub) -> None:
    from optforge.evaluators.tasks import SEARCH_SUITES

    from ..config import default_config

    d = default_config()
    p = sub.add_parser(
        "run", help="run a search campaign (the embedded default without a config file)",
        description=f"Run a search campaign. Without CONFIG.toml it runs the embedded default "
                    f"(`optforge config` prints it, annotated): from "
                    f"{', '.join(d.seeds)}, {d.budget} evaluations, stage 1 on "
                    f"{d.funnel.stage1}, stage 2 on {d.funnel.stage2}, the winner validated "
                    f"on {d.validation.suite}; {DEFAULT_CAMPAIGN_TIME}.")
    p.add_argument("config", nargs="?", metavar="CONFIG.toml",
                   help="campaign configuration (`optforge config` prints the default)")
    p.add_argument("--budget", type=int,
                   help=f"full evaluations to spend (default {d.budget})")
    p.add_argument("--charge", choices=("count", "time"),
                   help=f"charge each evaluation 1 (count) or its training time in units of "
                        f"the first seed's (time), so costlier rules cost more of the budget "
                        f"(default {d.search.charge})")
    p.add_argument("--suite", help=f"stage-1 suite: {', '.join(SEARCH_SUITES)} "
                                   f"(default {d.funnel.stage1})")
    p.add_argument("--stage2", help=f"stage-2 suite, where winners are chosen "
                                    f"(default {d.funnel.stage2})")
    p.add_argument("--no-validation", action="store_true",
                   help=f"do not validate the winner on the held-out {d.validation.suite} "
                        "suite")
    p.add_argument("--workers", type=int, help=f"evaluator processes (1: serial, "
                                               f"reproducible; default {d.workers}: one per "
                                               "core)")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--name", help="campaign name (default: from the seed and the time)")
    p.add_argument("--island", type=int, metavar="K",
                   help="run as island K (0, 1, ...) of campaign --name: several processes "
                        "sharing one database run one campaign as islands that share their "
                        "results and migrate their best programs (docs/scale.md)")
    p.add_argument("--db", help="database URL (default: $OPTFORGE_DB or ./optforge.db)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pool_arguments(p)
    p.set_defaults(func=run)

    p = sub.add_parser("config", help="print the default campaign configuration, annotated "
                                      "(copy it, edit it, pass it to `optforge run`)")
    p.set_defaults(func=print_default_config)

    p = sub.add_parser("resume", help="continue a stopped or killed campaign")
    p.add_argument("campaign", metavar="CAMPAIGN", nargs="?",
                   help="campaign name or id (default: the one most recently stopped: "
                        f"{', '.join(RESUMABLE)})")
    p.add_argument("--workers", type=int)
    p.add_argument("--db")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    add_pool_arguments(p)
    p.set_defaults(func=resume)


def print_default_config(args) -> int:
    from ..config import annotated_default

    sys.stdout.write(annotated_default())
    return 0


def _open_store(url, create=True):
    from optforge.store import Store
    from optforge.store.errors import StoreError
    try:
        return Store(url, create=create)
    except StoreError as e:
        raise UserError(str(e)) from None


def run(args) -> int:
    from optforge.evaluators import SuiteError, get_suite

    from ..engine import Campaign

    config = load_config(args.config).with_overrides(
        budget=args.budget, workers=args.workers, seed=args.seed, name=args.name,
        **{"funnel.stage1": args.suite, "funnel.stage2": args.stage2,
           "search.charge": args.charge,
           "validation.enabled": False if args.no_validation else None})
    for suite in (config.funnel.stage1, config.funnel.stage2):
        try:
            get_suite(suite)
        except SuiteError as e:
            raise UserError(str(e)) from None
    _check_seeds(config.seeds)
    if args.island is not None and (config.name is None or args.island < 0):
        raise UserError("--island K needs --name (the campaign its islands share) and K >= 0")
    name = config.name or f"campaign-{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    pool = open_pool(args)  # before anything is stored: a bad cluster stores nothing
    with _closing(pool), _open_store(args.db) as store:
        from optforge.store.errors import StoreError
        try:
            if args.island is None:
                campaign = Campaign.create(store, config, name)
            else:
                campaign = Campaign.create_island(store, config, name, args.island)
                name = campaign.config.name
        except StoreError as e:
            raise UserError(str(e)) from None
        print(f"campaign {name} (id {campaign.id}) in {store.display_url}", file=sys.stderr)
        return _drive(campaign, config.workers, args, pool)


def resume(args) -> int:
    from optforge.store.errors import NotFound, StoreError

    from ..engine import Campaign

    pool = open_pool(args)
    with _closing(pool), _open_store(args.db, create=False) as store:
        ref = _ref(args.campaign) if args.campaign else _last_stopped(store)
        try:
            campaign = Campaign.resume(store, ref)
        except NotFound as e:
            raise UserError(f"{e} in {store.display_url}") from None
        except StoreError as e:
            raise UserError(str(e)) from None
        name = store.get_campaign(campaign.id).name
        from ..stages import Phase

        if campaign.counters.phase is Phase.DONE:
            raise UserError(f"campaign {name} has finished; nothing to resume")
        if args.campaign is None:
            print(f"resuming campaign {name} (id {campaign.id}) in {store.display_url}",
                  file=sys.stderr)
        workers = args.workers if args.workers is not None else campaign.config.workers
        return _drive(campaign, workers, args, pool)


@contextmanager
def _closing(pool):
    """Close the dask pool (if any) when the command ends."""
    try:
        yield pool
    finally:
        if pool is not None:
            pool.close()


def _last_stopped(store) -> int:
    """The campaign a bare `optforge resume` continues: the last one to stop."""
    stopped = [c for c in store.campaigns() if c.status in RESUMABLE]
    if not stopped:
        raise UserError(f"no {', '.join(RESUMABLE)} campaign in {store.display_url} "
                        "(`optforge campaigns` lists them)")
    return max(stopped, key=lambda c: (c.updated_at, c.id)).id


def _ref(text: str):
    return int(text) if text.isdigit() else text


def _check_seeds(names) -> None:
    from optforge import seeds
    for name in names:
        if name.endswith(".rule"):
            if not os.path.exists(name):
                raise UserError(f"seed file {name} does not exist")
        elif name not in seeds.seed_names():
            raise UserError(f"unknown seed '{name}'; `optforge seeds` lists them")


def _drive(campaign, workers: int, args, pool=None) -> int:
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        # tqdm's own remaining time extrapolates evaluations, which stage 2, simplification
        # and validation make wrong: the bar shows `search.eta`'s estimate instead
        c = campaign.counters
        bar = tqdm(total=campaign.config.budget, unit="eval",
                   initial=round(c.spent, 1) if campaign.config.search.charge == "time"
                   else c.evaluations,
                   dynamic_ncols=True, file=sys.stderr,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

        from ..campaign_view import progress_postfix
        from ..eta import remaining_seconds
        pool_size = pool.size if pool is not None else workers or os.cpu_count() or 1

        def progress(c):
            # the campaign's best and count as every listing defines them (campaign_view):
            # the stage-2 best once stage 2 has one, budgeted evaluations only
            bar.n, best = progress_postfix(campaign.store, campaign.id,
                                           campaign.config.funnel.stage1)
            if campaign.config.search.charge == "time":  # the budget is time's worth
                bar.n = round(c.spent, 1)
            trained = c.trained_fraction or 0.0
            left = remaining_seconds(c, campaign.config, pool_size, campaign.stage1_budget)
            eta = "?" if left is None else tqdm.format_interval(left)
            bar.set_postfix_str(f"ETA {eta} | {best} | hits {c.hit_rate:.0%} | "
                                f"trained {trained:.0%} of children | {c.phase.value}")
        campaign.progress = progress
    from optforge.evaluators.scoring import EvaluationError
    from optforge.store.engine import describe_db_error
    from optforge.store.errors import StoreError
    from sqlalchemy.exc import DBAPIError
    try:
        with _sigterm_as_ctrl_c():
            summary = campaign.run(workers=workers or None, pool=pool)
    except StoreError as e:  # LeaseHeld (another process runs it), LeaseLost, ...
        raise UserError(str(e)) from None
    except EvaluationError as e:  # a broken task or workers that cannot start
        raise UserError(f"cannot evaluate: {e}; what was committed is kept (resume with: "
                        f"{resume_command(campaign, pool)})") from None
    except DBAPIError as e:  # a full disk, a server gone: what was committed is kept
        raise UserError(f"the database failed: {describe_db_error(e)}; what was committed "
                        f"is kept (resume with: {resume_command(campaign, pool)})") from None
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        _print_summary(campaign, summary, as_json=True)
    else:
        _print_summary(campaign, summary, pool=pool)
    return 0 if summary["status"] == "finished" else 130


@contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (a scheduler's or `kill`'s polite stop) pauses the campaign as Ctrl-C does."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_summary(campaign, summary, as_json: bool = False, pool=None) -> None:
    """What `run` prints at the end; the best and the evaluation count are the listings'
    (`search.campaign_view`), so `optforge campaigns` says the same."""
    from ..campaign_view import campaign_best, evaluation_counts, finalists

    store = campaign.store
    counts = evaluation_counts(store.suites(campaign=campaign.id))
    if as_json:
        best = campaign_best(store, campaign.id)
        print(json.dumps({**summary, "counts": counts.to_json(),
                          "best": best.to_json() if best else None}, indent=2))
        return
    print(f"campaign {campaign.id}: {summary['status']} after {counts.describe()}; "
          f"{summary['children']} children, cache hit rate {summary['hit_rate']:.0%}, "
          f"{summary['restarts']} restarts")
    if summary.get("charge") == "time":
        print(f"charged by training time: {summary['spent']:.1f} of a budget of "
              f"{campaign.config.budget} evaluations' worth (units: the first seed's time)")
    if summary["status"] != "finished":
        print(f"resume with: {resume_command(campaign, pool)}")
    top = finalists(store, campaign.id, 3)
    if top:
        suite = top[0].evaluation.suite
        print(f"best on {suite} (stage {top[0].evaluation.stage}):")
        for r in top:
            print(f"  #{r.program.id} {r.program.name}: score on {suite} {r.score:.3f}, "
                  f"complexity {r.program.complexity}")
    from ..stages import STAGE_VALIDATION
    from .validate_cmd import format_validation, stored_validation
    for ev in sorted(store.evaluations(campaign=campaign.id, stage=STAGE_VALIDATION),
                     key=lambda e: e.id):
        name = store.get_program(ev.program_id).name
        print()
        print(format_validation(stored_validation(ev, name),
                                f"held-out validation of #{ev.program_id} {name}"))


def resume_command(campaign, pool=None) -> str:
    """How to go on with `campaign`, naming its database unless it is the default one, and
    the dask scheduler it ran on (`pool`), if any."""
    from optforge.store.engine import resolve_url

    store = campaign.store
    db = "" if store.display_url == resolve_url(None) else f" --db '{store.display_url}'"
    cluster = f" --pool dask --scheduler {pool.address}" if hasattr(pool, "address") else ""
    return f"optforge resume {campaign.id}{db}{cluster}"

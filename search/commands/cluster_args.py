"""`--pool local|dask`, `--scheduler` and `--connect-timeout` of `optforge run` and `resume`:
where a campaign's evaluations run. ``local`` (the default) is the evaluator pool of this
machine (`--workers` processes); ``dask`` is a `dask.distributed` cluster
(`evaluators.dask_pool.DaskPool`), reached at `--scheduler`, while this process alone writes
the store (typically PostgreSQL, `--db postgresql+psycopg://...`)."""

from __future__ import annotations

from ..errors import UserError

POOLS = ("local", "dask")


def add_pool_arguments(parser) -> None:
    parser.add_argument("--pool", choices=POOLS, default="local",
                        help="where evaluations run: local worker processes (default) or a "
                             "dask.distributed cluster (needs --scheduler; "
                             "pip install 'optforge[cluster]')")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="the dask scheduler, tcp://HOST:PORT (with --pool dask)")
    parser.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                        help="seconds to reach the dask scheduler and see a worker "
                             "(default 20)")


def open_pool(args):
    """None for the local pool (the engine makes it); a connected `DaskPool` for
    ``--pool dask``. Every mistake is a one-line `UserError`, raised before anything is
    stored."""
    pool = getattr(args, "pool", "local")
    if pool != "dask":
        for flag, value in (("--scheduler", args.scheduler),
                            ("--connect-timeout", args.connect_timeout)):
            if value is not None:
                raise UserError(f"{flag} applies to --pool dask (add --pool dask, or drop "
                                f"{flag})")
        return None
    if args.workers is not None:
        raise UserError("--workers sets the local pool's size; a dask cluster runs as many "
                        "evaluations at once as its workers have threads (drop --workers)")
    if not args.scheduler:
        raise UserError("--pool dask needs --scheduler tcp://HOST:PORT (the address "
                        "`dask scheduler` prints)")
    if args.connect_timeout is not None and not args.connect_timeout > 0:
        raise UserError(f"--connect-timeout must be positive, not {args.connect_timeout:g}")
    from optforge.evaluators.dask_pool import (
        CONNECT_TIMEOUT_S,
        ClusterUnavailable,
        DaskPool,
        scheduler_address,
    )
    try:
        address = scheduler_address(args.scheduler)
        return DaskPool(address, connect_timeout=args.connect_timeout or CONNECT_TIMEOUT_S)
    except (ValueError, ClusterUnavailable) as e:
        raise UserError(str(e)) from None

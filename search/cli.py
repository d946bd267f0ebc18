"""The `optforge` command line.

Each group of subcommands lives in its own module under `search/commands/` with a
`register(subparsers)` function; a subcommand sets `func(args) -> int` (the exit status).
User mistakes are reported as one-line (or positioned) messages, never tracebacks: a command
raises `UserError` (or `dsl.RuleError`) and `main` prints it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from optforge.dsl import RuleError

from .errors import UserError

COMMAND_MODULES = (
    "optforge.search.commands.rules",
    "optforge.search.commands.ops_cmd",
    "optforge.search.commands.campaign",
    "optforge.search.commands.store_cmds",
    "optforge.search.commands.eval_cmd",
    "optforge.search.commands.seeds_export",
    "optforge.search.commands.validate_cmd",
    "optforge.search.commands.report_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optforge",
        description="Discover neural-network optimizers by program search.")
    parser.add_argument("--version", action="version", version=f"optforge {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def version() -> str:
    """The installed distribution's version (a checkout that is not installed says so)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("optforge")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        _check_workers(args)
        return int(args.func(args) or 0)
    except (UserError, RuleError) as e:
        print(f"optforge {args.command}: error: {e}" if isinstance(e, UserError) else str(e),
              file=sys.stderr)
        return e.exit_code if isinstance(e, UserError) else 1
    except KeyboardInterrupt:
        print("optforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `optforge top | head`
        return 0
    except Exception as e:
        message = _database_error(e, args)
        if message is None:
            raise
        print(f"optforge {args.command}: error: {message}", file=sys.stderr)
        return 1


def _check_workers(args: argparse.Namespace) -> None:
    """``--workers N`` (run, resume, eval, validate) beyond this machine's cores or memory
    is refused before the command starts anything: one line stating the limit."""
    workers = getattr(args, "workers", None)
    if isinstance(workers, int) and workers > 0:
        from optforge.evaluators.pool import check_workers
        problem = check_workers(workers, "--workers")
        if problem:
            raise UserError(problem)


def _database_error(e: Exception, args: argparse.Namespace) -> str | None:
    """The one-line message for a database error that a command let through (a store
    error, or one the driver raised mid-command), naming the database; None for anything
    else. Modules that were never imported cannot have raised."""
    store_errors = sys.modules.get("optforge.store.errors")
    if store_errors is not None and isinstance(e, store_errors.StoreError):
        return str(e)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    sqlite3 = sys.modules.get("sqlite3")
    if (sa_exc is not None and isinstance(e, sa_exc.DBAPIError)) or \
            (sqlite3 is not None and isinstance(e, sqlite3.Error)):
        from optforge.store.engine import describe_location, store_error
        return str(store_error(e, describe_location(getattr(args, "db", None))))
    return None


if __name__ == "__main__":
    sys.exit(main())

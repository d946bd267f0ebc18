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

from dsl import RuleError

from .errors import UserError

COMMAND_MODULES = (
    "search.commands.rules",
    "search.commands.ops_cmd",
    "search.commands.campaign",
    "search.commands.store_cmds",
    "search.commands.eval_cmd",
    "search.commands.seeds_export",
    "search.commands.validate_cmd",
    "search.commands.report_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optforge",
        description="Discover neural-network optimizers by program search.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
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


if __name__ == "__main__":
    sys.exit(main())

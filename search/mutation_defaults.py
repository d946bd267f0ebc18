"""The mutation registry's names, default weights and limits, as plain data: what a campaign's
configuration needs to check and default its `[mutations]` table without importing the
mutations themselves (and with them the language and torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_state: int = 2  # AdamW's memory
    max_statements: int = 40
    max_tries: int = 50


# One weight per mutation of `search.mutations.MUTATIONS` (a test keeps the two in step).
DEFAULT_WEIGHTS: dict[str, float] = {
    "insert": 2.0, "delete": 1.5, "change_op": 2.0, "change_arg": 2.0,
    "perturb_constant": 1.5, "redraw_constant": 0.5, "add_state": 0.3, "drop_state": 0.3,
}

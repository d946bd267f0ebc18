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
# The last five reach beyond one tensor (`search.reach_mutations`): they are rarer, the
# second gradient rarest (a step of a rule that calls `grad_at` costs two passes).
DEFAULT_WEIGHTS: dict[str, float] = {
    "insert": 2.0, "delete": 1.5, "change_op": 2.0, "change_arg": 2.0,
    "perturb_constant": 1.5, "redraw_constant": 0.5, "add_state": 0.3, "drop_state": 0.3,
    "read_context": 0.3, "globalize": 0.2, "clip_global_norm": 0.2, "sharpness": 0.1,
    "factor_state": 0.2,
}

# Relative weights of the ops a fresh statement draws (`insert`, `change_op`); an op not
# named here weighs 1. Whole-model reductions are drawn less often than per-tensor ops and
# the second gradient (one more forward and backward pass per step) seldom.
OP_DRAW_WEIGHTS: dict[str, float] = {"global_sum": 0.5, "global_norm": 0.5, "grad_at": 0.05}

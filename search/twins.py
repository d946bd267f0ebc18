"""Duplicate-cache hits that store less: the same behaviour in less memory.

A child can equal a program evaluated before in behaviour (a canonical or fingerprint hit)
and yet store less state: a slot of it factored (`dsl.slots`, the `factor_state` mutation:
the same math, stored as a row, a column or a scalar). Such a child joins the population in
the evaluated program's place, with its score and untrained, so that the memory saving is
inherited by its descendants; otherwise a factored child would always be a cache hit and
never live on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optforge.dsl import Program

from .individuals import Member
from .recorder import Lineage

if TYPE_CHECKING:
    from .engine import Campaign

__all__ = ["leaner_twin", "full_slots"]


def full_slots(p: Program) -> int:
    """State slots stored at the parameter's full shape."""
    return len(p.state) - len(p.slot_shapes)


def leaner_twin(campaign: Campaign, member: Member, child: Program, parent_id: int | None,
                kind: str) -> Member | None:
    """The member for `child`, a cache hit on `member`, if it stores fewer full-size slots
    than `member`'s program: stored with its lineage, scored as `member`. Else None."""
    if full_slots(child) >= full_slots(campaign.program(member.program_id)):
        return None
    record = campaign.store.add_program(child)
    campaign.programs[record.id] = child
    if parent_id is not None:
        campaign.recorder.commit(lineage=Lineage(record.id, parent_id, kind))
    return Member(record.id, member.score)

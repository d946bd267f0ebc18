"""Resolving what callers pass for a campaign or a program (an id, a name or hash prefix,
or a record) to a row, with one-line `NotFound` errors."""

from __future__ import annotations

import re
from typing import Union

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models as m
from .errors import InvalidRecord, NotFound
from .records import CampaignRecord, ProgramRecord

CampaignRef = Union[int, str, CampaignRecord]
ProgramRef = Union[int, ProgramRecord]

_HEX_PREFIX = re.compile(r"[0-9a-fA-F]{4,128}\Z")


def campaign_row(s: Session, ref: CampaignRef) -> m.Campaign:
    """A campaign by id, record, or name (a string of digits is tried as a name first,
    then as an id)."""
    if isinstance(ref, CampaignRecord):
        ref = ref.id
    if isinstance(ref, bool) or not isinstance(ref, (int, str)):
        raise InvalidRecord(f"a campaign is given by id, name or record, got {ref!r}")
    if isinstance(ref, str):
        row = s.scalars(select(m.Campaign).where(m.Campaign.name == ref)).one_or_none()
        if row is not None:
            return row
        if not ref.strip().isdigit():
            raise NotFound(f"no campaign named {ref!r}")
        ref = int(ref)
    row = s.get(m.Campaign, ref)
    if row is None:
        raise NotFound(f"no campaign with id {ref}")
    return row


def campaign_id(s: Session, ref: CampaignRef | None) -> int | None:
    return None if ref is None else campaign_row(s, ref).id


def program_row(s: Session, ref: ProgramRef) -> m.Program:
    if isinstance(ref, ProgramRecord):
        ref = ref.id
    if isinstance(ref, bool) or not isinstance(ref, int):
        raise InvalidRecord(f"a program is given by integer id or record, got {ref!r}")
    row = s.get(m.Program, ref)
    if row is None:
        raise NotFound(f"no program with id {ref}")
    return row


def program_by_text(s: Session, text: str) -> m.Program:
    """A program named on the command line: its id, or a prefix (>= 4 hex digits) of its
    structural hash, which must be unambiguous."""
    text = text.strip()
    if text.isdigit():
        row = s.get(m.Program, int(text))
        if row is not None:
            return row
        if not _HEX_PREFIX.match(text):
            raise NotFound(f"no program with id {text}")
    if not _HEX_PREFIX.match(text):
        raise NotFound(f"{text!r} is neither a program id nor a structural hash prefix")
    rows = s.scalars(select(m.Program).where(
        m.Program.structural_hash.startswith(text.lower(), autoescape=True)).limit(2)).all()
    if not rows:
        raise NotFound(f"no program with id or structural hash prefix {text!r}")
    if len(rows) > 1:
        raise NotFound(f"structural hash prefix {text!r} is ambiguous; give more digits")
    return rows[0]

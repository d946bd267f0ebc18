"""What the store keeps about a program, computed from a `dsl.Program`.

`ProgramData.from_program` asks the language for everything (source text, hashes, behaviour
fingerprint, size). The search usually has these already (its caches are keyed by them), so
`Store.add_program` also accepts a `ProgramData` to avoid computing a fingerprint twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRecord

_HASH = re.compile(r"[0-9A-Za-z_:+/=.-]{1,128}\Z")


@dataclass(frozen=True)
class ProgramData:
    name: str
    source: str
    structural_hash: str
    canonical_hash: str
    fingerprint: str
    statements: int
    complexity: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 200:
            raise InvalidRecord(f"program name must be 1..200 characters, got {self.name!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise InvalidRecord(f"program {self.name!r}: source text is empty")
        for field_name in ("structural_hash", "canonical_hash", "fingerprint"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not _HASH.match(value):
                raise InvalidRecord(f"program {self.name!r}: {field_name} must be a "
                                    f"non-empty hash string of at most 128 characters, "
                                    f"got {value!r}")
        for field_name in ("statements", "complexity"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidRecord(f"program {self.name!r}: {field_name} must be a "
                                    f"non-negative integer, got {value!r}")

    @classmethod
    def from_program(cls, program: Any) -> "ProgramData":
        """Everything about `program` (a `dsl.Program`) that the store keeps."""
        from optforge import (
            dsl,  # lazily: the language is heavy (torch, sympy) and only needed here
        )

        return cls(
            name=program.name,
            source=dsl.format_program(program),
            structural_hash=dsl.structural_hash(program),
            canonical_hash=dsl.canonical_hash(program),
            fingerprint=dsl.fingerprint(program),
            statements=dsl.statement_count(program),
            complexity=dsl.complexity(program),
        )


def as_program_data(program: Any) -> ProgramData:
    if isinstance(program, ProgramData):
        return program
    if not all(hasattr(program, a) for a in ("name", "state", "body", "returns")):
        raise InvalidRecord(f"expected a dsl.Program or store.ProgramData, "
                            f"got {type(program).__name__}")
    return ProgramData.from_program(program)

"""Errors are values with a position, printed like a compiler's:

    adam.rule:4:9: unknown function 'sqr'; did you mean 'sqrt'?
        v = sqr(g)
            ^

A diagnostic may carry a hint, printed on a line of its own under the caret. A `RuleError`
holds every error found in a file (the parser goes on after an error, see `dsl.parser`), in
source order. `did_you_mean` is the one place that suggests a known name for an unknown one:
ops and variables in rules, seeds and suites on the command line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    message: str
    filename: str = "<rule>"
    line: int = 0  # 1-based; 0 when the problem has no place in a source text
    col: int = 0  # 1-based, in characters
    source_line: str = ""
    severity: str = "error"  # or "warning"
    hint: str = ""  # what to do about it, printed as "    hint: ..." under the caret

    def format(self) -> str:
        message = f"{self.severity_prefix}{self.message}"
        if self.line <= 0:
            text = f"{self.filename}: {message}"
        else:
            text = f"{self.filename}:{self.line}:{self.col}: {message}"
            if self.source_line:
                shown = self.source_line.rstrip("\n").expandtabs(1)
                caret = " " * (max(self.col, 1) - 1) + "^"
                text = f"{text}\n    {shown}\n    {caret}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text

    @property
    def position(self) -> tuple[int, int]:
        """(line, col): the order diagnostics are printed in; 0 for no place comes first."""
        return self.line, self.col

    @property
    def severity_prefix(self) -> str:
        return "warning: " if self.severity == "warning" else ""


class RuleError(Exception):
    """A rule that is not a valid program. `diagnostics` holds every error found, in source
    order; `str(error)` is all of them, formatted, one after the other."""

    def __init__(self, diagnostics: Iterable[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """Every error (the diagnostics less any warnings)."""
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]


def in_source_order(diagnostics: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    """Sorted by position; diagnostics at one position keep the order they were found in."""
    return tuple(sorted(diagnostics, key=lambda d: d.position))


def close_names(name: str, known: Iterable[str]) -> tuple[str, ...]:
    """The known names closest to `name` (difflib's similarity ratio, at least 0.6): the
    closest one, and any others exactly as close, alphabetically."""
    known = sorted(set(known))
    best = difflib.get_close_matches(name, known, n=3)
    if not best:
        return ()

    def ratio(candidate: str) -> float:
        return difflib.SequenceMatcher(None, name, candidate).ratio()

    top = ratio(best[0])
    return tuple(sorted(c for c in best if ratio(c) == top))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"did you mean 'sqrt'?"`` (``"... 'a' or 'b'?"`` for a tie), or ``""`` when no known
    name is close. Callers join it to their message: ``f"unknown op 'sqr'; {hint}"``."""
    names = close_names(name, known)
    if not names:
        return ""
    quoted = [f"'{n}'" for n in names]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"did you mean {listed}?"


def line_of(source: str, line: int) -> str:
    lines = source.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""

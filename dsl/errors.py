"""Errors are values with a position, printed like a compiler's:

    adam.rule:4:9: unknown function 'sqr'; did you mean 'sqrt'?
        v = sqr(g)
            ^
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    message: str
    filename: str = "<rule>"
    line: int = 0  # 1-based; 0 when the problem has no place in a source text
    col: int = 0  # 1-based, in characters
    source_line: str = ""
    severity: str = "error"  # or "warning"

    def format(self) -> str:
        if self.line <= 0:
            return f"{self.filename}: {self.severity_prefix}{self.message}"
        head = f"{self.filename}:{self.line}:{self.col}: {self.severity_prefix}{self.message}"
        if not self.source_line:
            return head
        text = self.source_line.rstrip("\n").expandtabs(1)
        caret = " " * (max(self.col, 1) - 1) + "^"
        return f"{head}\n    {text}\n    {caret}"

    @property
    def severity_prefix(self) -> str:
        return "warning: " if self.severity == "warning" else ""


class RuleError(Exception):
    """A rule that is not a valid program. `str(error)` is the formatted diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]


def line_of(source: str, line: int) -> str:
    lines = source.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""

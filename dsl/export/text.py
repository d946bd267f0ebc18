"""Python literals for generated code: numbers (non-finite ones included) and strings that
read back exactly, whatever characters they hold."""

from __future__ import annotations

import math

from ..ir import Arg


def _num(v: float) -> str:
    """A Python literal for the float `v` (non-finite values included)."""
    v = float(v)
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else '-float("inf")'
    return repr(v)


def _arg_text(a: Arg) -> str:
    return a if isinstance(a, str) else _num(a)


def _literal(text: str) -> str:
    """A Python string literal that reads back as `text`, whatever it holds. Plain triple
    quotes where they can (raw where there are backslashes: LaTeX stays readable), else triple
    quotes with escapes for backslashes, runs of three quotes, a final quote and every
    character that is not printable (NUL and other control characters, lone surrogates), which
    a source file cannot hold."""
    plain = text.replace("\n", "").replace("\t", "")
    if '"""' not in text and not text.endswith(("\\", '"')) and plain.isprintable():
        return ('r"""' if "\\" in text else '"""') + text + '"""'
    tail = '\\"' if text.endswith('"') else ""  # else it would run into the closing quotes
    body = text[:-1] if tail else text
    escaped = "".join(map(_escape, body)).replace('"""', '\\"\\"\\"')
    return '"""' + escaped + tail + '"""'


def _escape(c: str) -> str:
    """One character as it stands in a non-raw string literal."""
    if c == "\\":
        return "\\\\"
    if c in "\n\t" or c.isprintable():
        return c
    return c.encode("unicode_escape").decode("ascii")  # \x00, \r, \u2028, \ud800, ...

"""Small helpers both mutation registries (`search.mutations`, `search.reach_mutations`)
build their edits with."""

from __future__ import annotations

from dataclasses import replace

from optforge.dsl.ir import Program, renumber_temps

__all__ = ["fresh_name", "rebuild"]


def rebuild(p: Program, body, returns=None, **changes) -> Program:
    """`p` with a new body (and returns, and other fields), temporaries renumbered."""
    q = replace(p, body=tuple(body), returns=tuple(p.returns if returns is None else returns),
                origin=None, **changes)
    return renumber_temps(q)


def fresh_name(p: Program, stem: str) -> str:
    """``{stem}{k}`` for the smallest k >= 1 that `p` does not use as a name."""
    used = set(p.params) | {s.target for s in p.body}
    k = 1
    while f"{stem}{k}" in used:
        k += 1
    return f"{stem}{k}"

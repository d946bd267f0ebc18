"""Known optimizers written in the rule language, one `NAME.rule` file each.

Every seed's docstring follows one layout, which `seed_info` reads::

    \"\"\"Adam: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.

    Free text: the form followed, and where the paper and the common implementation differ.

    reference: torch.optim.Adam
    lr: 0.001
    \"\"\"

* the first paragraph is the citation (it names the paper and its year);
* the trailing ``key: value`` lines are metadata: ``reference`` names what the seed is verified
  against step by step (`tests/seeds/`), ``lr`` is the reference's default learning rate (the
  default of the exported optimizer's ``lr``);
* the paragraphs in between are notes.

`rule_metadata` applies the same reading to any program, so a rule file written in this
layout exports with its own default learning rate too.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # the language loads torch: `seed_names` must not
    from optforge.dsl import Program

__all__ = ["SeedInfo", "RuleMetadata", "ResolvedRule", "UnknownRule", "seed_names", "load_seed",
           "load_rule", "resolve_rule", "looks_stored", "seed_source", "seed_info",
           "rule_metadata"]

_FIELD = re.compile(r"([a-z_]+):\s*(.+)\Z")
_YEAR = re.compile(r"\b(19[5-9][0-9]|20[0-9][0-9])\b")
_FIELDS = ("reference", "lr")


@dataclass(frozen=True)
class RuleMetadata:
    """What a rule's docstring says about it (see the module doc); empty strings and None
    where it says nothing."""

    citation: str
    year: int | None
    notes: str
    reference: str
    lr: float | None


@dataclass(frozen=True)
class SeedInfo:
    name: str
    program: Program
    metadata: RuleMetadata

    @property
    def citation(self) -> str:
        return self.metadata.citation

    @property
    def year(self) -> int | None:
        return self.metadata.year

    @property
    def reference(self) -> str:
        return self.metadata.reference

    @property
    def lr(self) -> float | None:
        return self.metadata.lr


def seed_names() -> tuple[str, ...]:
    return tuple(sorted(f.name[:-5] for f in resources.files(__name__).iterdir()
                        if f.name.endswith(".rule")))


def seed_source(name: str) -> str:
    if name not in seed_names():
        raise KeyError(f"unknown seed {name!r}; known: {', '.join(seed_names())}")
    return resources.files(__name__).joinpath(f"{name}.rule").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def load_seed(name: str) -> Program:
    """The seed program `name` (raises KeyError for an unknown name)."""
    from optforge.dsl import parse

    return parse(seed_source(name), f"seeds/{name}.rule")


@dataclass(frozen=True)
class ResolvedRule:
    """A rule a user named, with where it came from and its default learning rate."""

    program: Program
    provenance: str  # "rule file x.rule", "optforge seed 'lion' (seeds/lion.rule)", ...
    default_lr: float | None
    lr_note: str = ""  # where default_lr comes from, for an export's docstring


class UnknownRule(ValueError):
    """A name that is no rule file, no seed and (where asked) no stored program."""


def looks_stored(text: str) -> bool:
    """Whether `text` reads as a stored program: an id, or a structural-hash prefix of at
    least 4 hex digits."""
    return text.isdigit() or (len(text) >= 4 and all(c in "0123456789abcdef" for c in text))


def resolve_rule(spec: str | os.PathLike,
                 stored: Callable[[str], ResolvedRule] | None = None) -> ResolvedRule:
    """The rule a user names by `spec`: the one resolver of every command and of the
    Python API. The precedence, first match wins:

    1. an existing path: a directory is an error; a file is a rule file holding one rule;
    2. a seed name (`seed_names()`);
    3. a name ending in ``.rule`` or holding a path separator: a missing rule file;
    4. with `stored` (a store lookup: id or hash prefix -> rule), a name that reads as a
       stored program (`looks_stored`);
    5. anything else: `UnknownRule`, naming the closest seeds.

    A bad, missing or unreadable rule file is a `dsl.RuleError` with its position. The
    program is returned unchecked: `load_rule` checks it."""
    from optforge.dsl.errors import Diagnostic

    from optforge import dsl

    text = os.fspath(spec)
    if os.path.isdir(text):
        raise dsl.RuleError(Diagnostic("is a directory; give a rule file or a seed name",
                                       text))
    if os.path.exists(text):
        rules = dsl.load_rules(text)
        if len(rules) != 1:
            names = ", ".join(r.name for r in rules)
            raise dsl.RuleError(Diagnostic(f"holds {len(rules)} rules ({names}); give a file "
                                           "with one rule", text))
        return ResolvedRule(rules[0], f"rule file {os.path.basename(text)}",
                            rule_metadata(rules[0]).lr)
    if text in seed_names():
        info = seed_info(text)
        return ResolvedRule(info.program, f"optforge seed '{text}' (seeds/{text}.rule)",
                            info.lr)
    if text.endswith(".rule") or os.sep in text or "/" in text:
        dsl.load(text)  # raises the file's own error (missing, unreadable)
    if stored is not None and looks_stored(text):
        return stored(text)
    hint = dsl.did_you_mean(text, seed_names())
    if stored is not None:
        raise UnknownRule(f"'{text}' is neither a rule file nor a seed; "
                          + (f"{hint} " if hint else "") + "`optforge seeds` lists the seeds")
    if hint:
        raise UnknownRule(f"no rule file or seed named {text!r}; {hint} "
                          "(`optforge seeds` lists the seeds)")
    raise UnknownRule(f"no rule file or seed named {text!r} "
                      f"(seeds: {', '.join(seed_names())})")


def load_rule(spec: str | os.PathLike) -> Program:
    """The checked rule in a rule file or seed named by a user (`resolve_rule`, without a
    store): `RuleError`, positioned, for a bad or missing file; `UnknownRule` (a
    `ValueError`) naming the closest seeds otherwise."""
    from optforge import dsl

    return dsl.ensure_valid(resolve_rule(spec).program)


def seed_info(name: str) -> SeedInfo:
    """The seed `name` with its citation and metadata (raises KeyError for an unknown name)."""
    program = load_seed(name)
    return SeedInfo(name, program, rule_metadata(program))


def rule_metadata(program: Program) -> RuleMetadata:
    """Citation, year, notes, reference and default learning rate from a rule's docstring."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", program.doc.strip()) if p.strip()]
    fields: dict[str, str] = {}
    if paragraphs:
        lines = paragraphs[-1].splitlines()
        parsed = [_FIELD.match(line.strip()) for line in lines]
        if all(m is not None and m.group(1) in _FIELDS for m in parsed):
            fields = {m.group(1): m.group(2).strip() for m in parsed}
            paragraphs = paragraphs[:-1]
    citation = " ".join(paragraphs[0].split()) if paragraphs else ""
    # The year of publication: the first year after the quoted title (a title may hold a
    # number; an arXiv year may follow the venue's).
    years = _YEAR.findall(citation[citation.rfind('"') + 1:]) or _YEAR.findall(citation)
    notes = "\n\n".join(" ".join(p.split()) for p in paragraphs[1:])
    return RuleMetadata(citation=citation, year=int(years[0]) if years else None,
                        notes=notes, reference=fields.get("reference", ""),
                        lr=_positive_float(fields.get("lr")))


def _positive_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None

"""Known optimizers written in the rule language, one `NAME.rule` file each."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from dsl import Program, parse

__all__ = ["seed_names", "load_seed", "seed_source"]


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
    return parse(seed_source(name), f"seeds/{name}.rule")

"""docs/scale.md: every test it cites as the check of a promise exists (so a renamed or
deleted test cannot leave a promise unchecked), the flags it shows are `optforge run`'s and
`resume`'s, and README links the page."""

import re
from pathlib import Path

import pytest
from optforge.search.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "scale.md"


def test_every_cited_test_exists():
    text = PAGE.read_text("utf-8")
    defined = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        for name in re.findall(r"^def (test_\w+)\(", path.read_text("utf-8"), re.MULTILINE):
            defined.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
    for path, name in re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", text):
        assert path in defined.get(name, set()), f"{path}::{name}"
    for path in re.findall(r"tests/[\w/]+\.py", text):
        assert (ROOT / path).is_file(), path
    cited = set(re.findall(r"\b(test_\w+)\b(?!\.py)", text))  # test names, not files
    assert cited and not cited - set(defined), cited - set(defined)


def test_the_flags_shown_are_the_commands():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    flags = {c: {s for a in commands[c]._actions for s in a.option_strings}
             for c in ("run", "resume")}
    for command in ("run", "resume"):
        assert {"--pool", "--scheduler", "--connect-timeout", "--db"} <= flags[command]
    shown = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", PAGE.read_text("utf-8")))
    dask_cli = {"--nworkers", "--nthreads"}  # `dask worker`'s, not ours
    known = flags["run"] | flags["resume"] | {"--campaign", "--only-batched"}  # (top, bench)
    assert shown - dask_cli <= known, shown - dask_cli - known


def test_readme_links_the_page():
    assert "](docs/scale.md)" in (ROOT / "README.md").read_text("utf-8")

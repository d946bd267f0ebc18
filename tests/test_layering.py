"""Dependencies point one way: dsl <- (seeds, evaluators, store) <- search."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dsl", "seeds", "evaluators", "store", "search")
ALLOWED = {
    "dsl": set(),
    "seeds": {"dsl"},
    "evaluators": {"dsl"},
    "store": {"dsl"},
    "search": {"dsl", "seeds", "evaluators", "store"},
}


def _part(dotted: str) -> str:
    """The optforge part a dotted module name names: "optforge.dsl.ops" -> "dsl"."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "optforge" and len(parts) > 1 else parts[0]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_part(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "optforge":  # from optforge import dsl
                found.update(alias.name for alias in node.names)
            else:
                found.add(_part(node.module))
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_layering(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    for path in files:
        bad = imported_packages(path) - ALLOWED[package] - {package}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_checker_sees_imports():
    assert imported_packages(ROOT / "seeds" / "__init__.py") == {"dsl"}
    engine = ROOT / "search" / "engine.py", ROOT / "search" / "evolve.py"
    assert set().union(*map(imported_packages, engine)) == {
        "dsl", "seeds", "evaluators", "store"}


def test_nothing_imports_the_parts_as_top_level_packages():
    """The parts install only as optforge.dsl, optforge.store, ...: an `import dsl` would
    work in a checkout and fail for every user."""
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.parts[len(ROOT.parts)] in (".ci", "build") or "venv" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                     and node.module else [])
            for name in names:
                assert name.split(".")[0] not in PACKAGES, \
                    f"{path.relative_to(ROOT)} imports {name}: use optforge.{name}"

"""docs/: the pages say what the code does.

docs/language.md: its generated parts (`optforge ops`, the ops' math and domains, the edge
values) are what docs/ops_table.py generates from the op table today; every ```rule block
parses and checks; the error example prints what the page shows; the Python example runs.
docs/scores.md: its units are the scoring module's; README links both pages."""

import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from optforge.evaluators.scoring import SCORE_CEIL, SCORE_FLOOR
from optforge.search.cli import main

from optforge import dsl, seeds

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LANGUAGE = DOCS / "language.md"
SCORES = DOCS / "scores.md"

_FENCE = re.compile(r"^( *)```([\w-]*)\n(.*?)^\1```$", re.S | re.M)


def blocks(page: Path, info: str) -> list[str]:
    """The code blocks of `page` fenced as ```info, dedented as they would render."""
    return [textwrap.dedent(m.group(3)) for m in _FENCE.finditer(page.read_text("utf-8"))
            if m.group(2) == info]


def console(page: Path, command: str) -> str:
    """What the page shows `$ command` printing, in its ```console blocks."""
    for block in blocks(page, "console"):
        parts = re.split(r"^\$ (.*)\n", block, flags=re.M)
        for cmd, out in zip(parts[1::2], parts[2::2]):
            if cmd == command:
                return out
    raise AssertionError(f"{page.name} shows no `$ {command}`")


def ops_table_module():
    spec = importlib.util.spec_from_file_location("ops_table", DOCS / "ops_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- docs/language.md -------------------------------------------------------------------------

def test_the_generated_parts_are_what_the_op_table_generates_today():
    gen = ops_table_module()
    parts, page = gen.parts(), gen.current(LANGUAGE.read_text("utf-8"))
    assert set(page) == set(parts) == {"ops", "math", "edges"}
    for name, text in parts.items():
        assert page[name] == text, f"run `python docs/ops_table.py --write` ({name})"


def test_the_op_list_is_the_commands_output(capsys):
    # as tests/test_cli_ops.py checks README's copy
    assert main(["ops"]) == 0
    assert f"```text\n{capsys.readouterr().out}```" in LANGUAGE.read_text("utf-8")


def test_every_op_has_a_row_with_its_domain_note():
    rows = {line.split("|")[1].strip(" `"): line
            for line in ops_table_module().math_table().splitlines()[2:]}
    assert list(rows) == list(dsl.OPS)
    for name, op in dsl.OPS.items():
        assert op.domain.replace("|", r"\|") in rows[name]


def test_the_pages_note_on_sign_of_nan_is_still_true():
    # the page and the op table say what torch does: when torch changes, so must they
    import torch
    note = "`sign(nan)` is 0 in torch, so a NaN gradient under\n`sign` gives a zero step"
    assert note in LANGUAGE.read_text("utf-8")
    assert float(dsl.OPS["sign"].torch_fn(0, torch.tensor(float("nan")))) == 0.0
    assert "sign(nan) = 0" in dsl.OPS["sign"].domain


def test_every_rule_block_parses_and_checks(tmp_path, monkeypatch, capsys):
    rules = blocks(LANGUAGE, "rule")
    assert len(rules) >= 2
    monkeypatch.chdir(tmp_path)
    for source in rules:
        program = dsl.parse(source)
        report = dsl.check(program)
        assert report.ok, report
        path = tmp_path / f"{program.name}.rule"
        path.write_text(source)
        assert main(["check", path.name]) == 0
        out = capsys.readouterr()
        assert out.err == "" and out.out.startswith(f"{program.name}: ")


def test_the_lion_example_is_the_seed():
    assert blocks(LANGUAGE, "rule")[0] == seeds.seed_source("lion")


def test_the_worked_example_checks_and_simplifies_as_shown(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clipped_adam.rule").write_text(blocks(LANGUAGE, "rule")[1])
    assert main(["check", "clipped_adam.rule"]) == 0
    assert capsys.readouterr().out == console(LANGUAGE, "optforge check clipped_adam.rule")
    assert main(["simplify", "clipped_adam.rule"]) == 0
    real = capsys.readouterr().out.splitlines()
    shown = console(LANGUAGE, "optforge simplify clipped_adam.rule").splitlines()
    cut = shown.index("    ...")  # the page leaves the docstring out
    assert shown[:cut] == real[:cut] and real[-len(shown[cut + 1:]):] == shown[cut + 1:]


def _syntax_messages_alike(text: str) -> str:
    # Python words its syntax errors differently from version to version
    return re.sub(r"syntax error: .*", "syntax error: ...", text)


def test_the_error_example_prints_what_the_page_shows(tmp_path, monkeypatch, capsys):
    (source,) = blocks(LANGUAGE, "rule-with-errors")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.rule").write_text(source)
    assert main(["check", "broken.rule"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    shown = console(LANGUAGE, "optforge check broken.rule")
    assert _syntax_messages_alike(out.err) == _syntax_messages_alike(shown)
    assert "hint: " in shown and "warning: " in shown and "did you mean" in shown


def test_the_python_example_runs(tmp_path):
    (code,) = blocks(LANGUAGE, "python")
    (tmp_path / "clipped_adam.rule").write_text(blocks(LANGUAGE, "rule")[1])
    code += "\nassert (dsl.check(p).ok, dsl.complexity(p)) == (True, 21)\n"
    code += "assert ClippedAdam.__name__ == 'ClippedAdam' and step.shape == w.shape\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "clipped_adam.py").exists()


def test_the_factored_slot_error_prints_what_the_page_shows(tmp_path, monkeypatch, capsys):
    (source,) = blocks(LANGUAGE, "rule-with-slot-error")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "too_small.rule").write_text(source)
    assert main(["check", "too_small.rule"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == console(LANGUAGE, "optforge check too_small.rule")


def test_the_group_example_runs(tmp_path):
    (code,) = blocks(LANGUAGE, "python-group")
    for source in blocks(LANGUAGE, "rule"):
        (tmp_path / f"{dsl.parse(source).name}.rule").write_text(source)
    code += "\nassert [s[0].shape for s in states] == [(4, 1), (5,)]\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['grad_at'] 2\n"


# ---- docs/scores.md and README ----------------------------------------------------------------

def test_scores_page_states_the_scoring_modules_units():
    text = SCORES.read_text("utf-8")
    assert f"[{SCORE_FLOOR}, {SCORE_CEIL:g}]" in text  # [0.25, 4]
    for suite in ("tiny", "small", "medium", "reference", "validation"):
        assert f"`{suite}`" in text


@pytest.mark.parametrize("page", ["docs/language.md", "docs/scores.md"])
def test_readme_links_the_pages(page):
    assert f"]({page})" in (ROOT / "README.md").read_text("utf-8")
    assert (ROOT / page).is_file()


def test_the_pages_link_only_to_what_exists():
    for page in (LANGUAGE, SCORES):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links {target}"

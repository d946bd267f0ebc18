"""`optforge check` and `optforge simplify` as a user runs them."""

import subprocess
import sys
from pathlib import Path

from optforge.search.cli import main

MESSY = (Path(__file__).parent / "data" / "messy.rule").read_text()  # becomes Lion


def test_check_prints_one_line_per_valid_rule(tmp_path, capsys):
    f = tmp_path / "two.rule"
    f.write_text("def a(w, g, lr, t):\n    return lr * g\n"
                 "def b(w, g, lr, t, m):\n    m = interp(g, m, 0.9)\n    return lr * sign(m), m\n")
    assert main(["check", str(f)]) == 0
    out = capsys.readouterr().out
    assert out == "a: 0 statements, complexity 1\nb: 1 statement, complexity 4\n"


def test_check_reports_positioned_errors_and_exits_1(tmp_path, capsys):
    good = tmp_path / "good.rule"
    good.write_text("def a(w, g, lr, t):\n    return lr * g\n")
    bad = tmp_path / "bad.rule"
    bad.write_text("def b(w, g, lr, t):\n    return lr * sqr(g)\n")
    assert main(["check", str(good), str(bad), str(tmp_path / "missing.rule")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "a: 0 statements, complexity 1\n"
    assert f"{bad}:2:17: unknown function 'sqr'; did you mean 'sqrt'?" in captured.err
    assert "missing.rule: No such file or directory" in captured.err
    assert "Traceback" not in captured.err


def test_simplify_prints_lion_for_the_messy_rule(tmp_path, capsys):
    f = tmp_path / "messy.rule"
    f.write_text(MESSY)
    assert main(["simplify", str(f)]) == 0
    assert capsys.readouterr().out == (
        "def messy(w, g, lr, t, m):\n"
        "    c = interp(g, m, 0.9)\n"
        "    m = interp(g, m, 0.99)\n"
        "    return lr * (0.01 * w + sign(c)), m\n")


def test_simplify_of_an_invalid_rule_is_an_error_not_a_traceback(tmp_path, capsys):
    f = tmp_path / "nog.rule"
    f.write_text("def f(w, g, lr, t):\n    return lr * w\n")
    assert main(["simplify", str(f)]) == 1
    assert "does not depend on the gradient" in capsys.readouterr().err


def test_console_script_help_works():
    out = subprocess.run([sys.executable, "-m", "optforge", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "check" in out and "simplify" in out

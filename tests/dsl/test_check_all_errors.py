"""Every error of a rule file, not only the first (issue 13, item 7).

The parser reads on after an error, statement by statement (a syntax error sets its
statement aside); the checker checks each rule, through a stand-in program where a statement
was dropped; `optforge check` prints all of it in source order, then the count.
"""

import random

import pytest
from optforge.dsl import RuleError
from optforge.dsl import errors as dsl_errors
from optforge.search.cli import main

from optforge import dsl, seeds
from tests.dsl.test_errors import CASES

MESSY = '''"""A file with a mistake on almost every line."""


def adamish(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2, 0.5)
    u = m / (sqrtt(v) + eps)
    d = orth(lr)
    x = g +* 2
    return lrr * u + mom + d + x, m, v


def second(w, g, lr, t, m, beta):
    m = interp(g, m, beta)
    return lr * sign(m), m


def third(w, g, lr, t):
    return lr * row_mean(t)
'''

# (line, col, message) of every error in MESSY, in source order
MESSY_ERRORS = [
    (6, 9, "interp() takes 3 arguments, got 4"),
    (7, 14, "unknown function 'sqrtt'; did you mean 'sqrt'?"),
    (8, 9, "orth() needs a tensor, but its argument is a scalar"),  # the checker's
    (9, 12, "syntax error: invalid syntax"),
    (10, 12, "undefined name 'lrr'; did you mean 'lr'?"),
    (10, 22, "undefined name 'mom'"),
    (15, 5, "state input 'beta' is never returned: return the step, then the new m, beta"),
    (19, 5, "the step does not depend on the gradient 'g'"),
    (19, 17, "row_mean() needs a tensor, but its argument is a scalar"),
]


def errors_of(source: str) -> list[tuple[int, int, str]]:
    return [(d.line, d.col, d.message) for d in dsl.check_source(source, "x.rule").errors]


# ---- the library ----------------------------------------------------------------------------

def test_every_error_of_a_messy_file_in_source_order():
    assert errors_of(MESSY) == MESSY_ERRORS


def test_rule_error_carries_every_parse_error_and_prints_them_all():
    with pytest.raises(RuleError) as info:
        dsl.parse_rules(MESSY, "messy.rule")
    parse_errors = [e for e in MESSY_ERRORS if "needs a tensor" not in e[2]
                    and "does not depend" not in e[2]]
    assert [(d.line, d.col, d.message) for d in info.value.errors] == parse_errors
    text = str(info.value)
    for d in info.value.errors:
        assert d.format() in text
    assert text.count("messy.rule:") == len(parse_errors)
    assert info.value.first.line == 6  # the first in source order, not the first found


@pytest.mark.parametrize("source", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_a_single_mistake_is_still_exactly_one_error(source):
    parsed = dsl.parse_with_errors(source, "bad.rule")
    assert len(parsed.errors) == 1
    with pytest.raises(RuleError) as info:
        dsl.parse_rules(source, "bad.rule")
    assert str(info.value) == parsed.errors[0].format()


def test_syntax_errors_on_several_lines_are_all_reported():
    src = ("def f(w, g, lr, t, m):\n"
           "    m = interp(g, m, 0.9\n"       # '(' never closed
           "    x = g +* 2\n"
           "    y = g $ 3\n"
           "    return lr * (m + x + y) * sqr(g), m\n")
    assert errors_of(src) == [
        (2, 15, "syntax error: '(' was never closed"),
        (3, 12, "syntax error: invalid syntax"),
        (4, 11, "syntax error: invalid syntax"),
        (5, 31, "unknown function 'sqr'; did you mean 'sqrt'?"),
    ]


def test_a_statement_set_aside_still_assigns_its_names():
    # x, y, a and b are assigned by broken statements: reading them is no second error
    src = ("def f(w, g, lr, t):\n"
           "    x = g +* 2\n"
           "    if lr\n"
           "        y = g\n"
           "    a, b = g, w\n"
           "    return lr * (x + y + a + b)\n")
    assert [e[0] for e in errors_of(src)] == [2, 3, 5]


def test_a_broken_return_is_no_missing_return():
    src = "def f(w, g, lr, t):\n    x = sqrtt(g)\n    return lr * * x\n"
    assert [e[2] for e in errors_of(src)] == [
        "unknown function 'sqrtt'; did you mean 'sqrt'?", "syntax error: invalid syntax"]


def test_an_error_on_a_def_line_sets_that_rule_aside_and_the_next_is_read():
    src = ("def f(w, g, lr t):\n    return sqr(g)\n\n"
           "def h(w, g, lr, t):\n    return lr * sqr(g)\n")
    assert errors_of(src) == [(1, 16, "syntax error: invalid syntax"),
                              (5, 17, "unknown function 'sqr'; did you mean 'sqrt'?")]


def test_errors_inside_one_expression_are_all_found():
    src = "def f(w, g, lr, t):\n    return interp(sqrtt(g), mm, lrr, 1)\n"
    assert errors_of(src) == [
        (2, 12, "interp() takes 3 arguments, got 4"),
        (2, 19, "unknown function 'sqrtt'; did you mean 'sqrt'?"),
        (2, 29, "undefined name 'mm'"),
        (2, 33, "undefined name 'lrr'; did you mean 'lr'?"),
    ]


def test_the_stand_in_for_a_dropped_statement_adds_no_checker_error():
    # the only use of g is in the broken statement, and orth reads its value: neither "the
    # step does not depend on g" nor "orth() needs a tensor" may follow from the drop
    src = ("def f(w, g, lr, t, m):\n"
           "    u = sqrtt(g)\n"
           "    m = orth(u)\n"
           "    return lr * m, m\n")
    assert errors_of(src) == [(2, 9, "unknown function 'sqrtt'; did you mean 'sqrt'?")]


def test_checker_errors_come_with_parse_errors_and_warnings_only_from_clean_rules():
    src = ("def f(w, g, lr, t, m, unused=1.0):\n"
           "    m = interp(g, m, 0.9)\n"
           "    z = col_mean(t) + sqr(g)\n"
           "    return lr * m, m\n"
           "def h(w, g, lr, t, unused=1.0):\n"
           "    return lr * g\n")
    report = dsl.check_source(src, "x.rule")
    assert [(d.line, d.message) for d in report.errors] == [
        (3, "unknown function 'sqr'; did you mean 'sqrt'?")]
    # f has a parse error: its warnings would be about a program with statements missing
    assert [(d.line, d.message) for d in report.warnings] == [
        (5, "hyperparameter 'unused' is never used")]
    assert [p.name for p in report.valid] == ["h"]


def test_every_seed_checks_clean_and_parses_as_before():
    for name in seeds.seed_names():
        source = seeds.seed_source(name)
        report = dsl.check_source(source, f"{name}.rule")
        assert report.ok and not report.errors, name
        assert report.valid == dsl.parse_rules(source)


def test_broken_seeds_never_raise_and_report_in_source_order():
    rng = random.Random(13)
    tokens = ["+*", "sqrtt(", "lrr", ")", "(", ",,", "=", "if x", "\t", "return", ":", "'"]
    for _ in range(300):
        lines = seeds.seed_source(rng.choice(seeds.seed_names())).split("\n")
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(lines))
            at = rng.randint(0, len(lines[k]))
            lines[k] = lines[k][:at] + rng.choice(tokens) + lines[k][at:]
        report = dsl.check_source("\n".join(lines), "broken.rule")
        positions = [d.position for d in report.errors]
        assert positions == sorted(positions)
        for d in report.errors:
            d.format()


def test_check_file_reports_an_unreadable_file_as_one_error(tmp_path):
    report = dsl.check_file(tmp_path / "missing.rule")
    assert [d.message for d in report.errors] == ["No such file or directory"]


# ---- hints ----------------------------------------------------------------------------------

def test_a_hyperparameter_after_one_with_a_default_gets_a_hint():
    src = "def f(w, g, lr, t, m, beta1=0.9, eps):\n    return lr * g / eps, m\n"
    (d,) = dsl.check_source(src, "x.rule").errors
    assert d.message.startswith("syntax error: ")
    assert d.hint.startswith("give 'eps' a default if it is a hyperparameter, e.g. `eps=0.9`")
    assert d.format().endswith("\n    hint: " + d.hint)


def test_a_hyperparameter_without_a_default_read_as_state_gets_a_hint():
    src = ("def f(w, g, lr, t, m, beta1):\n"
           "    m = interp(g, m, beta1)\n"
           "    return lr * m, m\n")
    (d,) = dsl.check_source(src, "x.rule").errors
    assert d.message.startswith("state input 'beta1' is never returned")
    assert d.hint == ("'beta1' is read but never assigned; if it is a hyperparameter, give it "
                      "a default, e.g. `beta1=0.9`")
    assert str(RuleError(d)).split("\n") == [
        ("x.rule:3:5: state input 'beta1' is never returned: return the step, then the new m, "
         "beta1"),
        "        return lr * m, m",
        "        ^",
        "    hint: " + d.hint]


def test_state_returned_unchanged_gets_the_hint_as_a_warning():
    src = "def f(w, g, lr, t, beta):\n    return lr * g * beta, beta\n"
    (w,) = dsl.check_source(src, "x.rule").warnings
    assert w.message == "state 'beta' is never updated: it stays zero"
    assert w.hint == "if 'beta' is a hyperparameter, give it a default, e.g. `beta=0.9`"


# ---- did you mean ---------------------------------------------------------------------------

def test_did_you_mean_names_the_closest_and_ties():
    did_you_mean = dsl_errors.did_you_mean
    assert did_you_mean("sqrtt", dsl.OPS) == "did you mean 'sqrt'?"
    assert did_you_mean("lino", seeds.seed_names()) == "did you mean 'lion'?"
    assert did_you_mean("zzzz", dsl.OPS) == ""
    assert dsl_errors.close_names("abc", ["abd", "xbc", "zzz"]) == ("abd", "xbc")  # a tie
    assert did_you_mean("abc", ["xbc", "abd", "zzz"]) == "did you mean 'abd' or 'xbc'?"


def test_misspelled_names_in_a_rule_get_suggestions():
    src = ("def f(w, g, lr, t, m, beta1=0.9):\n"
           "    m = interp(g, m, betta1)\n"
           "    return lrr * sgn(m), m\n")
    assert [e[2] for e in errors_of(src)] == [
        "undefined name 'betta1'; did you mean 'beta1'?",
        "undefined name 'lrr'; did you mean 'lr'?",
        "unknown function 'sgn'; did you mean 'sign'?",
    ]


# ---- the command line -----------------------------------------------------------------------

def test_cli_check_prints_every_error_then_the_count(tmp_path, capsys):
    f = tmp_path / "messy.rule"
    f.write_text(MESSY)
    assert main(["check", str(f)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    heads = [line for line in err.splitlines() if line.startswith(f"{f}:")]
    assert heads == [f"{f}:{line}:{col}: {message}" for line, col, message in MESSY_ERRORS]
    assert err.endswith(f"\n{len(MESSY_ERRORS)} errors\n")
    # each one positioned: its source line and a caret under the column
    lines = err.splitlines()
    for (line, col, _), head in zip(MESSY_ERRORS, heads):
        k = lines.index(head)
        assert lines[k + 1] == "    " + MESSY.splitlines()[line - 1]
        assert lines[k + 2] == "    " + " " * (col - 1) + "^"


def test_cli_check_one_error_prints_no_count(tmp_path, capsys):
    f = tmp_path / "one.rule"
    f.write_text("def b(w, g, lr, t):\n    return lr * sqr(g)\n")
    assert main(["check", str(f)]) == 1
    assert capsys.readouterr().err == (f"{f}:2:17: unknown function 'sqr'; did you mean "
                                       f"'sqrt'?\n        return lr * sqr(g)\n"
                                       f"                    ^\n")


def test_cli_check_counts_over_files_and_still_lists_valid_rules(tmp_path, capsys):
    a = tmp_path / "a.rule"
    a.write_text("def ok(w, g, lr, t):\n    return lr * g\n"
                 "def bad(w, g, lr, t):\n    return lr * sqr(g)\n")
    b = tmp_path / "b.rule"
    b.write_text("def c(w, g, lr, t):\n    x = g +* 2\n    return lr * x * lrr\n")
    assert main(["check", str(a), str(b)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "ok: 0 statements, complexity 1\n"
    assert captured.err.endswith("\n3 errors in 2 files\n")

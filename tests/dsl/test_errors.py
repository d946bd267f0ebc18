"""Every bad input is data: the source, the expected message and its position."""

import pytest
from optforge.dsl import RuleError

from optforge import dsl

HEAD = "def f(w, g, lr, t, m):\n"

# (id, source, message fragment, line, column)
CASES = [
    ("syntax", "def f(w, g, lr, t):\n    return lr * (g +\n",
     "syntax error", 2, 17),
    ("syntax-indent", "def f(w, g, lr, t):\nreturn g\n", "syntax error", 2, 1),
    ("unknown-function", HEAD + "    m = sqr(g)\n    return lr * m, m\n",
     "unknown function 'sqr'; did you mean 'sqrt'?", 2, 9),
    ("arity", HEAD + "    m = interp(g, m)\n    return lr * m, m\n",
     "interp() takes 3 arguments, got 2", 2, 9),
    ("arity-one", "def f(w, g, lr, t):\n    return sqrt(g, g)\n",
     "sqrt() takes 1 argument, got 2", 2, 12),
    ("undefined", HEAD + "    m = interp(g, mm, 0.9)\n    return lr * m, m\n",
     "undefined name 'mm'; did you mean 'm'?", 2, 19),
    ("state-never-returned", "def f(w, g, lr, t, m, v):\n    return lr * g, m\n",
     "state input 'v' is never returned", 2, 5),
    ("return-arity", HEAD + "    return lr * g, m, m\n",
     "return has 3 values; expected 2", 2, 23),
    ("non-numeric-default", "def f(w, g, lr, t, beta='x'):\n    return lr * g\n",
     "hyperparameter 'beta' must default to a number", 1, 25),
    ("name-default", "def f(w, g, lr, t, beta=lr):\n    return lr * g\n",
     "hyperparameter 'beta' must default to a number", 1, 25),
    ("for", "def f(w, g, lr, t):\n    for i in g:\n        pass\n    return g\n",
     "a 'for' loop is not part of the rule language", 2, 5),
    ("while", "def f(w, g, lr, t):\n    while g:\n        pass\n    return g\n",
     "a 'while' loop is not part of the rule language", 2, 5),
    ("if", "def f(w, g, lr, t):\n    if lr:\n        g = g\n    return g\n",
     "an 'if' statement is not part of the rule language", 2, 5),
    ("ifexp", "def f(w, g, lr, t):\n    return g if lr else w\n",
     "conditional expression", 2, 12),
    ("attribute", "def f(w, g, lr, t):\n    return torch.sign(g)\n",
     "attribute access", 2, 12),
    ("import", "import os\ndef f(w, g, lr, t):\n    return g\n", "an import at the top level",
     1, 1),
    ("import-inside", "def f(w, g, lr, t):\n    import os\n    return g\n",
     "an import is not part of the rule language", 2, 5),
    ("lambda", "def f(w, g, lr, t):\n    return (lambda x: x)(g)\n", "a lambda", 2, 13),
    ("comprehension", "def f(w, g, lr, t):\n    return mean([x for x in g])\n",
     "a comprehension", 2, 17),
    ("generator", "def f(w, g, lr, t):\n    return mean(x for x in g)\n",
     "a comprehension", 2, 16),
    ("call-non-op", "def f(w, g, lr, t):\n    return print(g)\n", "unknown function 'print'",
     2, 12),
    ("call-variable", HEAD + "    return m(g), m\n", "'m' is a variable, not a function", 2, 12),
    ("call-expression", "def f(w, g, lr, t):\n    return (g)(g)\n",
     "'g' is a variable, not a function", 2, 13),
    ("subscript", "def f(w, g, lr, t):\n    return g[0]\n", "indexing", 2, 12),
    ("string", "def f(w, g, lr, t):\n    return g * 'x'\n", "a string is not a number", 2, 16),
    ("bool", "def f(w, g, lr, t):\n    return g * True\n", "a boolean is not a number", 2, 16),
    ("compare", "def f(w, g, lr, t):\n    return g < w\n", "a comparison", 2, 12),
    ("matmul", "def f(w, g, lr, t):\n    return g @ w\n", "operator '@'", 2, 12),
    ("modulo", "def f(w, g, lr, t):\n    return g % 2\n", "operator '%'", 2, 12),
    ("keyword-arg", "def f(w, g, lr, t):\n    return clip(g, lo=0, hi=1)\n",
     "clip() takes positional arguments only", 2, 20),
    ("tuple-target", "def f(w, g, lr, t):\n    a, b = g, w\n    return a\n",
     "assign to one name at a time", 2, 5),
    ("assign-input", "def f(w, g, lr, t):\n    g = g * 2\n    return g\n",
     "cannot assign to the input 'g'", 2, 5),
    ("assign-hyper", "def f(w, g, lr, t, b=0.5):\n    b = 1\n    return g\n",
     "cannot assign to the hyperparameter 'b'", 2, 5),
    ("missing-return", "def f(w, g, lr, t):\n    x = g * 2\n", "has no 'return'", 1, 1),
    ("code-after-return", "def f(w, g, lr, t):\n    return g\n    x = g\n",
     "code after 'return' is never run", 3, 5),
    ("bad-params", "def f(g, w, lr, t):\n    return g\n",
     "parameters start with (w, g, lr, t); found 'g'", 1, 7),
    ("few-params", "def f(w, g):\n    return g\n", "parameters start with (w, g, lr, t)",
     1, 1),
    ("varargs", "def f(w, g, lr, t, *rest):\n    return g\n", "'*args'", 1, 21),
    ("decorator", "@torch.jit\ndef f(w, g, lr, t):\n    return g\n", "decorators", 1, 2),
    ("top-level-assign", "x = 1\ndef f(w, g, lr, t):\n    return g\n",
     "an assignment at the top level", 1, 1),
    ("no-rule", "# nothing\n", "no rule definition found", 1, 1),
    ("op-as-name", "def f(w, g, lr, t, sqrt=1.0):\n    return g\n",
     "parameter 'sqrt' is the name of an op", 1, 20),
    ("op-as-value", "def f(w, g, lr, t):\n    return sqrt\n", "'sqrt' is a function", 2, 12),
    ("non-ascii-name", "def f(w, g, lr, t):\n    é = g\n    return é\n", "must be ASCII", 2, 5),
    ("copy-then-reassign", HEAD + "    old = m\n    m = interp(g, m, 0.9)\n"
     "    return lr * (old + m), m\n", "copies a variable that is assigned again later", 2, 5),
    ("non-finite", "def f(w, g, lr, t):\n    return g * 1e999\n", "numbers must be finite",
     2, 16),
    ("walrus", "def f(w, g, lr, t):\n    return (x := g)\n", "':='", 2, 13),
    ("duplicate-rule", "def f(w, g, lr, t):\n    return g\ndef f(w, g, lr, t):\n    return g\n",
     "rule 'f' is defined twice", 3, 1),
    ("null-byte", "def f(w, g, lr, t):\n    return g\x00\n", "syntax error", 0, 0),
    ("expression-statement", "def f(w, g, lr, t):\n    sqrt(g)\n    return g\n",
     "expression statement", 2, 5),
]


@pytest.mark.parametrize("source,message,line,col", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_gives_positioned_error(source, message, line, col):
    with pytest.raises(RuleError) as info:
        dsl.parse_rules(source, "bad.rule")
    d = info.value.first
    assert message in d.message
    assert (d.line, d.col) == (line, col) or (line == 0 and d.line in (0, 2))
    text = str(info.value)
    assert text.startswith(f"bad.rule:{d.line}:{d.col}: " if d.line else "bad.rule: ")
    if d.line:
        # the source line and a caret under the column
        _, shown, caret = text.split("\n")
        assert shown.strip() == source.splitlines()[d.line - 1].strip()
        assert caret.index("^") - 4 == d.col - 1


def test_error_format_is_file_line_col_message_source_caret():
    with pytest.raises(RuleError) as info:
        dsl.parse("def f(w, g, lr, t, m):\n    m = sqr(g)\n    return lr * m, m\n",
                  "adam.rule")
    assert str(info.value) == (
        "adam.rule:2:9: unknown function 'sqr'; did you mean 'sqrt'?\n"
        "        m = sqr(g)\n"
        "            ^")


def test_columns_count_characters_not_bytes():
    src = 'def f(w, g, lr, t):\n    """é"""\n    return g * "ü"\n'
    with pytest.raises(RuleError) as info:
        dsl.parse(src)
    assert info.value.first.col == 16


def test_no_python_traceback_for_pathological_input():
    for src in ["(" * 500 + "g" + ")" * 500, "def f(w, g, lr, t):\n    return " + "-" * 5000 + "g\n",
                "def f(w, g, lr, t):\n    return " + "+".join(["g"] * 3000) + "\n",
                "\x00\x01", "def", "é" * 10]:
        try:
            dsl.parse_rules(src)
        except RuleError:
            pass


def test_identifiers_cannot_inject_code():
    # every name that reaches generated code passes the identifier check
    bad = "def f(w, g, lr, t):\n    x\u200b = g\n    return x\u200b\n"
    with pytest.raises(RuleError):
        dsl.parse(bad)
    with pytest.raises(RuleError):
        dsl.parse("def " + "a" * 65 + "(w, g, lr, t):\n    return g\n")


def test_load_missing_file_is_a_rule_error(tmp_path):
    with pytest.raises(RuleError, match="No such file"):
        dsl.load(tmp_path / "missing.rule")
    bad = tmp_path / "latin1.rule"
    bad.write_bytes(b"def f(w, g, lr, t):\n    return g # \xe9\n")
    with pytest.raises(RuleError, match="not UTF-8"):
        dsl.load(bad)

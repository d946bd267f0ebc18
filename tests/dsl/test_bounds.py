"""Work that always ends: the simplifier's bounds on sympy (size and time) and the rule-file
reader's bound on how much it reads.

No test here measures time: each asserts that the bounded path was taken (the program comes
back unsimplified, the reason is named). Without the bounds the simplifier tests would run
for hours; CI's overall timeout catches that.
"""

import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sympy
from optforge.dsl import parser, simplifier
from optforge.dsl.printer import Node
from optforge.dsl.simplifier import (
    MAX_EXPANDED_TERMS,
    MAX_POWER,
    algebra_bound,
    expanded_terms,
    simplify_bounded,
)
from optforge.search.cli import main

from optforge import dsl

HUGE_CONSTANT = "def huge_constant(w, g, lr, t):\n    return lr * g * 10 ** 10 ** 10\n"
HUGE_DEGREE = "def huge_degree(w, g, lr, t):\n    return lr * (g + 1) ** 100000\n"
MESSY = (Path(__file__).parent.parent / "data" / "messy.rule").read_text()


# ---- the size guard, on expression trees ---------------------------------------------------

def add(a, b):
    return Node("add", (a, b))


def pow_(a, b):
    return Node("pow", (a, b))


def test_power_bound_refuses_huge_exponents():
    assert "1e+10" in algebra_bound(pow_(10.0, 1e10))  # 10 ** 10 ** 10 after folding
    assert algebra_bound(pow_(add("g", 1.0), 100000.0)) is not None
    assert algebra_bound(pow_("g", -1e6)) is not None  # the magnitude counts, not the sign
    assert algebra_bound(pow_(10.0, add("t", 1e10))) is not None  # 10**t * 10**1e10
    assert algebra_bound(Node("mul", ("lr", pow_(Node("sqrt", ("v",)), 1e9)))) is not None


def test_power_bound_multiplies_nested_exponents():
    assert algebra_bound(pow_(pow_(3.0, 8.0), 8.0)) is None  # 3 ** 64
    assert algebra_bound(pow_(pow_(3.0, 8.0), 9.0)) is not None  # 3 ** 72
    tree = "g"
    for _ in range(6):
        tree = Node("square", (tree,))
    assert algebra_bound(tree) is None  # g ** 64
    assert algebra_bound(Node("square", (tree,))) is not None  # g ** 128


def test_power_bound_accepts_what_optimizers_write():
    beta_t = pow_("beta2", "t")
    v_hat = Node("div", ("v", Node("sub", (1.0, beta_t))))
    assert algebra_bound(Node("div", ("m", add(Node("sqrt", (v_hat,)), 1e-8)))) is None
    assert algebra_bound(pow_(add("g", 1.0), float(MAX_POWER))) is None
    assert algebra_bound(pow_("g", 0.5)) is None


def test_expanded_terms_estimate():
    assert expanded_terms("g") == 1
    assert expanded_terms(add("g", 1.0)) == 2
    assert expanded_terms(Node("mul", (add("g", "m"), add("v", 1.0)))) == 4
    assert expanded_terms(pow_(add("g", 1.0), 5.0)) == 6  # (g + 1) ** 5: 6 monomials
    assert expanded_terms(Node("square", (add(add("g", "m"), "v"),))) == 6
    assert expanded_terms(Node("sqrt", (add("g", 1.0),))) == 1  # a function is one term
    four = add(add(add("g", "m"), "v"), 1.0)
    assert expanded_terms(pow_(four, 4.0)) == 35
    assert expanded_terms(pow_(four, 16.0)) == MAX_EXPANDED_TERMS + 1  # 969: capped
    # a subexpression past the cap makes the whole expression past it
    assert expanded_terms(Node("exp", (pow_(four, 16.0),))) == MAX_EXPANDED_TERMS + 1


# ---- the simplifier falls back --------------------------------------------------------------

@pytest.mark.parametrize("source", [HUGE_CONSTANT, HUGE_DEGREE], ids=["constant", "degree"])
def test_simplify_returns_the_program_unsimplified_at_the_power_bound(source):
    p = dsl.parse(source)
    result = simplify_bounded(p)
    assert result.program == p
    assert "exponent" in result.bound_hit
    assert dsl.simplify(p) == p
    assert simplifier.simplify_algebra(p) == p


def test_sympy_simplify_never_sees_a_big_expansion(monkeypatch):
    seen = []
    real = sympy.simplify
    monkeypatch.setattr(sympy, "simplify", lambda e, **kw: seen.append(e) or real(e, **kw))
    p = dsl.parse("def f(w, g, lr, t, m, v):\n    m = interp(g, m, 0.9)\n"
                  "    v = interp(g * g, v, 0.99)\n"
                  "    return lr * (m + v + g + 1) ** 16 + 0 * w, m, v\n")
    result = simplify_bounded(p)
    assert result.bound_hit is None  # a soft bound: the rest is simplified as ever
    assert "0 * w" not in dsl.format_program(result.program)
    assert seen  # the small expressions still go through sympy.simplify
    powers = [x for e in seen for x in sympy.preorder_traversal(e) if isinstance(x, sympy.Pow)]
    assert all(x.exp != 16 for x in powers)


def test_the_time_bound_returns_the_program_unsimplified(monkeypatch):
    monkeypatch.setattr(simplifier, "SIMPLIFY_CPU_SECONDS", 1e-3)  # adam needs far more
    adam = dsl.load(Path(dsl.__file__).parent.parent / "seeds" / "adam.rule")
    result = simplify_bounded(adam)
    assert result.program == adam
    assert "CPU time" in result.bound_hit
    # the timer is off afterwards and the next simplification runs to the end
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
    monkeypatch.setattr(simplifier, "SIMPLIFY_CPU_SECONDS", 60.0)
    messy = dsl.parse(MESSY)
    assert "sign(c)" in dsl.format_program(dsl.simplify(messy))


def test_outside_the_main_thread_the_size_bounds_still_apply():
    results = []
    worker = threading.Thread(target=lambda: results.append(
        simplify_bounded(dsl.parse(HUGE_DEGREE))))
    worker.start()
    worker.join()
    assert results and results[0].bound_hit is not None


def test_winner_ablations_end_on_a_huge_exponent():
    """What a campaign's winner goes through."""
    from optforge.search.simplify_winner import ablations

    p = dsl.parse("def f(w, g, lr, t, m):\n    m = interp(g, m, 0.9)\n"
                  "    return lr * sign(m) * (g + 1) ** 100000, m\n")
    variants = ablations(dsl.simplify(p))
    assert variants and all(dsl.check(q).ok for q in variants)


# ---- the command line -----------------------------------------------------------------------

@pytest.mark.parametrize("source", [HUGE_CONSTANT, HUGE_DEGREE], ids=["constant", "degree"])
def test_cli_simplify_prints_the_rule_unsimplified_with_a_note(source, tmp_path, capsys):
    f = tmp_path / "huge.rule"
    f.write_text(source)
    assert main(["simplify", str(f)]) == 0
    out, err = capsys.readouterr()
    assert out == dsl.format_program(dsl.parse(source))
    assert len(err.splitlines()) == 1
    assert err.startswith("optforge simplify: note: simplification bound hit (")


def test_cli_show_of_a_stored_huge_rule(tmp_path, capsys):
    from optforge.store import Store

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with Store(url) as st:
        record = st.add_program(dsl.parse(HUGE_CONSTANT))
    assert main(["show", str(record.id), "--db", url]) == 0
    out = capsys.readouterr().out
    # the simplifier's fallback, said as such (not "already in simplest form")
    assert "\nsimplified:\n    (not simplified: " in out and "simplest form" not in out
    assert "10^{10^{10}}" in out.split("LaTeX:")[1]


# ---- reading rule files ---------------------------------------------------------------------

class _Endless:
    """A binary file of endless NULs that records the sizes it was asked for."""

    def __init__(self, sizes):
        self.sizes = sizes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size=-1):
        self.sizes.append(size)
        if size is None or size < 0:
            raise MemoryError  # what reading /dev/zero whole ends in
        return b"\0" * size


def test_read_rule_file_reads_a_bounded_amount(monkeypatch):
    sizes = []
    monkeypatch.setattr(parser, "open", lambda *a, **k: _Endless(sizes), raising=False)
    with pytest.raises(dsl.RuleError) as e:
        parser.read_rule_file("endless.rule")
    assert len(sizes) == 1 and 0 <= sizes[0] <= 4 * parser.MAX_SOURCE_CHARS + 1
    assert "longer than 50,000 characters" in str(e.value)
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("pad", ["#", "\u00e9", "\U0001f600"], ids=["1-byte", "2-byte",
                                                                  "4-byte"])
def test_the_limit_counts_characters_not_bytes(tmp_path, pad):
    body = "def f(w, g, lr, t):\n    return lr * g\n#"
    f = tmp_path / "padded.rule"
    f.write_text(body + pad * (parser.MAX_SOURCE_CHARS - len(body)), encoding="utf-8")
    assert dsl.load(f).name == "f"
    f.write_text(body + pad * (parser.MAX_SOURCE_CHARS - len(body) + 1), encoding="utf-8")
    with pytest.raises(dsl.RuleError, match="longer than"):
        dsl.load(f)


def test_windows_newlines_read_as_before(tmp_path):
    f = tmp_path / "crlf.rule"
    f.write_bytes(b"def f(w, g, lr, t):\r\n    return lr * sqr(g)\r\n")
    with pytest.raises(dsl.RuleError) as e:
        dsl.load(f)
    assert e.value.first.line == 2 and e.value.first.col == 17
    assert e.value.first.source_line == "    return lr * sqr(g)"


def test_a_late_encoding_error_names_its_byte_in_the_file(tmp_path):
    f = tmp_path / "late.rule"
    head = b"def f(w, g, lr, t):\n    return lr * g\n" + b"#" * 20_000
    f.write_bytes(head + b"\xff\n")
    with pytest.raises(dsl.RuleError, match=f"invalid start byte at byte {len(head)}\\)"):
        dsl.load(f)


def _limit_memory():
    one_gib = 2**30  # plenty for the CLI; far less than /dev/zero read whole
    resource.setrlimit(resource.RLIMIT_DATA, (one_gib, one_gib))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_cli_check_dev_zero_is_a_one_line_error():
    run = subprocess.run([sys.executable, "-m", "optforge", "check", "/dev/zero"],
                         capture_output=True, text=True, check=False,
                         preexec_fn=_limit_memory)
    assert run.returncode == 1
    assert run.stderr == ("/dev/zero: source is longer than 50,000 characters; "
                          "not a rule file?\n")


def test_cli_check_non_utf8_is_a_one_line_error(tmp_path, capsys):
    f = tmp_path / "latin1.rule"
    f.write_bytes(b"def f(w, g, lr, t):\n    return lr * g  # caf\xe9\n")
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert err == f"{f}: not UTF-8 text (invalid continuation byte at byte 44)\n"

"""`optforge validate ID|SEED|FILE`: a rule beside tuned AdamW, Lion and SGD with momentum,
on the console and as JSON; user mistakes as one-line (or positioned) messages. The `tiny`
suite stands in for the held-out `validation` suite."""

from __future__ import annotations

import json

import pytest
import torch
from optforge.evaluators import get_suite
from optforge.search import cli
from optforge.store import Store

from optforge import dsl

TINY = get_suite("tiny")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("validate-cache")


@pytest.fixture
def optforge(monkeypatch, cache, capsys):
    """Run `optforge ARGS...` in this process; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("OPTFORGE_CACHE_DIR", str(cache))
    threads = torch.get_num_threads()

    def run(*argv):
        try:
            status = cli.main(list(argv))
        except SystemExit as e:  # argparse
            status = e.code
        finally:
            torch.set_num_threads(threads)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return status, out, err

    return run


def test_adamw_validates_at_1_beside_lion_and_sgd(optforge):
    status, out, err = optforge("validate", "adamw", "--suite", "tiny")
    assert status == 0, err
    assert "validation of adamw (optforge seed 'adamw'" in out
    assert "AdamW = 1.000 on every task by construction" in out
    assert "task scores on tiny" in out and "score on tiny (geometric mean over 7 tasks)" in out
    assert "NOT the held-out validation suite" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("task  "))
    assert lines[header].split()[:4] == ["task", "rule", "Lion", "SGD-m"]
    rows = lines[header + 1:header + 1 + len(TINY.tasks)]
    assert [r.split()[0] for r in rows] == [t.name for t in TINY.tasks]
    assert all(r.split()[1] == "1.000" and r.split()[-2] == "1.000-1.000" for r in rows)
    scores = {line.strip().rsplit(None, 1)[0]: line.split()[-1] for line in lines
              if line.startswith("  ")}
    assert scores["adamw (the rule)"] == scores["AdamW"] == "1.000"
    assert {"Lion", "SGD with momentum"} <= set(scores)


def test_the_second_validation_reads_the_comparators_from_the_cache(optforge):
    optforge("validate", "signum", "--suite", "tiny")
    status, out, _ = optforge("validate", "lion", "--suite", "tiny")
    assert status == 0 and "comparators from the cache" in out


def test_json(optforge):
    status, out, _ = optforge("validate", "lion", "--suite", "tiny", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["rule"] == "lion" and data["suite"] == "tiny" and data["status"] == "ok"
    assert data["source"].startswith("optforge seed 'lion'")
    assert data["comparators"]["adamw"] == 1.0
    assert data["comparators"]["lion"] == data["score"]
    assert set(data["tasks"]) == {t.name for t in TINY.tasks}
    for t in data["tasks"].values():
        assert {"score", "loss", "best_lr", "seed_spread", "seed_scores", "comparators"} <= set(t)
        assert t["comparators"]["lion"]["score"] == t["score"]


def test_a_stored_program_by_id_and_by_hash_prefix(optforge, tmp_path):
    db = f"sqlite:///{tmp_path / 'v.db'}"
    program = dsl.parse("def found(w, g, lr, t, m, beta=0.8):\n    m = interp(g, m, beta)\n"
                        "    return lr * sign(m), m\n")
    with Store(db) as store:
        record = store.add_program(program)
    for ref in (str(record.id), record.structural_hash[:8]):
        status, out, err = optforge("validate", ref, "--db", db, "--suite", "tiny", "--json")
        assert status == 0, err
        data = json.loads(out)
        assert data["rule"] == "found" and data["source"] == f"optforge program #{record.id}"


def test_a_rule_file(optforge, tmp_path):
    path = tmp_path / "mine.rule"
    path.write_text("def mine(w, g, lr, t, m, beta=0.9):\n    m = interp(g, m, beta)\n"
                    "    return lr * sign(m), m\n")
    status, out, err = optforge("validate", str(path), "--suite", "tiny")
    assert status == 0, err
    assert "validation of mine (rule file mine.rule)" in out


def test_a_failing_rule_exits_1_with_its_status(optforge, tmp_path):
    path = tmp_path / "nan.rule"
    path.write_text("def nan_rule(w, g, lr, t):\n    return lr * g * log(-1.0)\n")
    status, out, _ = optforge("validate", str(path), "--suite", "tiny")
    assert status == 1 and "validation of nan_rule (rule file nan.rule): nan" in out


@pytest.mark.parametrize("argv, message", [
    (["validate", "no_such_seed"], "'no_such_seed' is neither a rule file nor a seed"),
    (["validate", "missing.rule"], "missing.rule: No such file or directory"),
    (["validate", "42", "--db", "sqlite:///{tmp}/none.db"], "no optforge database at"),
    (["validate", "42", "--db", "nonsense://"], "cannot use nonsense://"),
    (["validate", "{tmp}"], "is a directory"),
    (["validate", "adamw", "--workers", "0"], "argument --workers: must be at least 1"),
    (["validate", "adamw", "--suite", "huge"], "invalid choice: 'huge'"),
])
def test_user_mistakes_are_one_line_messages(optforge, tmp_path, argv, message):
    status, out, err = optforge(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert status != 0 and message in err and not out
    if not argv[-1].startswith(("0", "huge")):  # argparse adds its usage line
        assert err.count("\n") == 1


def test_an_unknown_id_in_a_database(optforge, tmp_path):
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(db).close()
    status, _, err = optforge("validate", "4242", "--db", db)
    assert status == 1 and err.count("\n") == 1 and "4242" in err


def test_a_bad_rule_file_gets_a_positioned_error(optforge, tmp_path):
    path = tmp_path / "bad.rule"
    path.write_text("def bad(w, g, lr, t):\n    return lr * sqr(g)\n")
    status, _, err = optforge("validate", str(path), "--suite", "tiny")
    assert status == 1 and f"{path}:2:" in err and "^" in err

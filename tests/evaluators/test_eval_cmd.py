"""`optforge eval`: scores on the console and as JSON; user mistakes as one-line (or
positioned) messages, never tracebacks."""

from __future__ import annotations

import json

import pytest
from optforge.search import cli

from .helpers import torch_threads


@pytest.fixture
def optforge(monkeypatch, cache, capsys):
    """Run `optforge ARGS...` in this process; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("OPTFORGE_CACHE_DIR", str(cache))
    if "optforge.search.commands.eval_cmd" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES",
                            cli.COMMAND_MODULES + ("optforge.search.commands.eval_cmd",))

    def run(*argv):
        try:
            with torch_threads(1):
                status = cli.main(list(argv))
        except SystemExit as e:  # argparse
            status = e.code
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return status, out, err

    return run


def test_eval_a_seed_prints_every_task_and_the_suite_score(optforge, tiny, tiny_baselines):
    status, out, err = optforge("eval", "adamw", "--suite", "tiny")
    assert status == 0, err
    assert "adamw on suite tiny" in out and "score 1.000" in out
    for t in tiny.tasks:
        assert t.name in out


def test_eval_json(optforge, tiny, tiny_baselines):
    status, out, _ = optforge("eval", "lion", "--suite", "tiny", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["rule"] == "lion" and data["suite"] == "tiny" and data["status"] == "ok"
    assert isinstance(data["score"], float)
    assert set(data["tasks"]) == {t.name for t in tiny.tasks}
    for task in data["tasks"].values():
        assert {"score", "loss", "best_lr"} <= set(task)


def test_eval_a_rule_file_on_two_workers(optforge, tmp_path, tiny_baselines):
    path = tmp_path / "mine.rule"
    path.write_text("def mine(w, g, lr, t, m, beta=0.9):\n"
                    "    m = interp(g, m, beta)\n"
                    "    return lr * sign(m), m\n")
    status, out, err = optforge("eval", str(path), "--suite", "tiny", "--workers", "2",
                                "--json")
    assert status == 0, err
    assert json.loads(out)["rule"] == "mine"


def test_a_failing_rule_exits_1_with_its_status(optforge, tmp_path, tiny_baselines):
    path = tmp_path / "nan.rule"
    path.write_text("def nan_rule(w, g, lr, t):\n    return lr * g * log(-1.0)\n")
    status, out, _ = optforge("eval", str(path), "--suite", "tiny")
    assert status == 1 and ": nan, score 0.250" in out


@pytest.mark.parametrize("argv, message", [
    (["eval", "no_such_seed"], "no rule file or seed named 'no_such_seed' (seeds: "),
    (["eval", "missing.rule"], "missing.rule: No such file or directory"),
    (["eval", "adamw", "--workers", "0"], "argument --workers: must be at least 1"),
    (["eval", "adamw", "--workers", "two"], "expected a whole number"),
    (["eval", "adamw", "--suite", "huge"], "invalid choice: 'huge'"),
])
def test_user_mistakes_are_messages(optforge, argv, message):
    status, _, err = optforge(*argv)
    assert status != 0 and message in err


def test_a_bad_rule_file_gets_a_positioned_error(optforge, tmp_path):
    path = tmp_path / "bad.rule"
    path.write_text("def bad(w, g, lr, t):\n    return lr * sqr(g)\n")
    status, _, err = optforge("eval", str(path), "--suite", "tiny")
    assert status == 1 and f"{path}:2:" in err and "^" in err

    path.write_text("def lazy(w, g, lr, t):\n    return lr * 2.0\n")
    status, _, err = optforge("eval", str(path), "--suite", "tiny")
    assert status == 1 and "does not depend on the gradient" in err

"""`optforge seeds` and `optforge export`, through the real entry point `search.cli.main`."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from optforge.search import cli

from optforge import dsl, seeds

MODULE = "optforge.search.commands.seeds_export"


@pytest.fixture
def optforge(monkeypatch, capsys):
    # until search/cli.py lists this command module
    if MODULE not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + (MODULE,))

    def run(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err
    return run


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeds_lists_every_seed(optforge):
    code, out, err = optforge("seeds")
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "STMTS"]
    assert len(lines) == 1 + len(seeds.seed_names())
    adamw = next(line for line in lines if line.startswith("adamw "))
    assert "lr=0.001 beta1=0.9 beta2=0.999 eps=1e-08 weight_decay=0.01" in adamw
    assert "Loshchilov & Hutter" in adamw and "2019" in adamw
    assert adamw.split()[1] == str(dsl.statement_count(seeds.load_seed("adamw")))


def test_seeds_json(optforge):
    code, out, _ = optforge("seeds", "--json")
    assert code == 0
    records = json.loads(out)
    assert [r["name"] for r in records] == list(seeds.seed_names())
    adam = next(r for r in records if r["name"] == "adam")
    assert adam == {
        "name": "adam", "citation": seeds.seed_info("adam").citation, "year": 2015,
        "reference": "torch.optim.Adam", "lr": 0.001, "statements": 4,
        "complexity": dsl.complexity(seeds.load_seed("adam")), "state": ["m", "v"],
        "hyperparameters": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-08}}


def test_export_a_seed(optforge, tmp_path):
    out = tmp_path / "my_adamw.py"
    code, stdout, err = optforge("export", "adamw", "--out", str(out), "--class-name", "AdamW")
    assert code == 0 and not err
    assert "class AdamW" in stdout and "from my_adamw import AdamW" in stdout
    module = _import(out, "my_adamw")
    assert "optforge seed 'adamw'" in module.PROVENANCE
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = module.AdamW([p])
    opt.step()
    assert opt.defaults["lr"] == 0.001 and p.detach().lt(1).all()


def test_existing_out_needs_force(optforge, tmp_path):
    out = tmp_path / "opt.py"
    out.write_text("keep me\n")
    code, _, err = optforge("export", "lion", "--out", str(out))
    assert code == 1 and "exists; pass --force" in err
    assert out.read_text() == "keep me\n"
    code, _, err = optforge("export", "lion", "--out", str(out), "--force")
    assert code == 0 and "class Lion(torch.optim.Optimizer)" in out.read_text()


def test_export_a_rule_file(optforge, tmp_path):
    rule = tmp_path / "mine.rule"
    rule.write_text('def my_rule(w, g, lr, t, m, beta=0.9):\n'
                    '    """Mine: Me, "A rule", 2025.\n\n    lr: 0.05\n    """\n'
                    '    m = interp(g, m, beta)\n    return lr * sign(m), m\n')
    out = tmp_path / "mine.py"
    code, stdout, _ = optforge("export", str(rule), "--out", str(out))
    assert code == 0 and "class MyRule" in stdout
    module = _import(out, "mine")
    assert module.MyRule.__init__.__defaults__[0] == 0.05  # lr from the rule's docstring
    assert "rule file mine.rule" in module.PROVENANCE


def test_export_refuses_what_it_cannot_write(optforge, tmp_path):
    two = tmp_path / "two.rule"
    two.write_text("def a(w, g, lr, t):\n    return lr * g\n\n"
                   "def b(w, g, lr, t):\n    return lr * sign(g)\n")
    invalid = tmp_path / "invalid.rule"
    invalid.write_text("def r(w, g, lr, t, m):\n    return lr * m, m\n")
    broken = tmp_path / "broken.rule"
    broken.write_text("def r(w, g, lr, t):\n    return lr * sqr(g)\n")
    out = tmp_path / "x.py"
    cases = [
        (("export", str(two), "--out", str(out)), "holds 2 rules (a, b)"),
        (("export", str(invalid), "--out", str(out)),
         "invalid.rule:2:5: the step does not depend on the gradient 'g'"),
        (("export", str(broken), "--out", str(out)), "did you mean 'sqrt'?"),
        (("export", "adamx", "--out", str(out)), "did you mean 'adamax'?"),
        (("export", "missing.rule", "--out", str(out)), "missing.rule: No such file or directory"),
        (("export", str(tmp_path), "--out", str(out)), "is a directory"),
        (("export", "adam", "--out", str(tmp_path)), "is a directory"),
        (("export", "adam", "--out", str(tmp_path / "no" / "x.py")), "does not exist"),
        (("export", "adam", "--out", str(out), "--class-name", "not valid"),
         "not a Python identifier"),
    ]
    for argv, message in cases:
        code, _, err = optforge(*argv)
        assert code == 1, argv
        assert message in err, (argv, err)
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".py"] == []


def test_exported_exact_adafactor_keeps_factored_state(optforge, tmp_path):
    """The exported exact Adafactor stores one number per row and one per column of a matrix
    (the rule's `r: row`, `c: col`), and a vector's n entries and one number."""
    out = tmp_path / "adafactor_export.py"
    code, _, err = optforge("export", "adafactor", "--out", str(out))
    assert code == 0 and not err
    module = _import(out, "adafactor_export")
    matrix = torch.nn.Parameter(torch.randn(6, 9))
    vector = torch.nn.Parameter(torch.randn(23))
    opt = module.Adafactor([matrix, vector])
    for p in (matrix, vector):
        p.grad = torch.randn_like(p)
    opt.step()

    def stored(p):
        return sorted(tuple(v.shape) for v in opt.state[p].values()
                      if torch.is_tensor(v) and v.dim() > 0)
    assert stored(matrix) == [(1, 9), (6, 1)]
    assert stored(vector) == [(1,), (23,)]

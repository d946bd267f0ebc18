"""The Python front door: `import optforge` and its five functions, over the real parts."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from dataclasses import replace

import pytest
from optforge.search.config import Funnel, Simplify, Validation, default_config

import optforge
from optforge import dsl


def test_import_optforge_is_light_and_names_its_parts():
    code = ("import sys, optforge\n"
            "assert 'torch' not in sys.modules, 'import optforge loaded torch'\n"
            "import optforge.dsl, optforge.store, optforge.search, optforge.evaluators\n"
            "print(sorted(optforge.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sorted(
        ["evaluate", "export", "load_rule", "open_store", "run_campaign"]))


def test_load_rule_from_a_seed_a_file_or_a_clear_error(tmp_path):
    lion = optforge.load_rule("lion")
    assert isinstance(lion, dsl.Program) and lion.name == "lion"
    path = tmp_path / "mine.rule"
    path.write_text(dsl.format_program(lion).replace("def lion", "def mine"))
    assert optforge.load_rule(path).name == "mine"
    with pytest.raises(ValueError, match="no rule file or seed named 'lino'; did you mean 'lion'"):
        optforge.load_rule("lino")
    with pytest.raises(dsl.RuleError):
        optforge.load_rule(tmp_path / "missing.rule")


def test_evaluate_scores_a_rule_on_a_suite():
    result = optforge.evaluate("adamw", "tiny")
    assert result.suite == "tiny" and result.status == "ok"
    assert result.score == pytest.approx(1.0)  # AdamW is the unit
    with pytest.raises(ValueError, match="did you mean 'tiny'"):
        optforge.evaluate("adamw", "tinyy")


def test_export_writes_an_importable_optimizer(tmp_path):
    path = tmp_path / "my_lion.py"
    source = optforge.export("lion", path)
    assert path.read_text() == source
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    spec = importlib.util.spec_from_file_location("my_lion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert any(isinstance(v, type) and v.__name__ == "Lion" for v in vars(module).values())


def test_run_campaign_and_read_it_back(tmp_path):
    db = f"sqlite:///{tmp_path / 'api.db'}"
    config = replace(default_config(), seeds=("sgd_momentum",), budget=3,
                     funnel=Funnel(stage1="tiny", stage2="tiny", threshold=-10.0,
                                   stage2_max=1, screen="tiny", hurdle=0.5),
                     simplify=Simplify(enabled=False),
                     validation=Validation(enabled=False, suite="tiny"))
    summary = optforge.run_campaign(config, db=db, name="api", workers=1, seed=5)
    assert summary["status"] == "finished" and summary["evaluations"] <= 3
    with optforge.open_store(db) as store:
        assert store.get_campaign("api").status == "finished"
        assert store.top(1, campaign="api", suite="tiny")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

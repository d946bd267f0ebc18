"""`optforge export ID`: a program from the database leaves as a working torch optimizer."""

import importlib.util
import inspect

import torch
from optforge.search.cli import main
from optforge.store import Store

from optforge import dsl

RULE = ("def found(w, g, lr, t, m, beta=0.8):\n    m = interp(g, m, beta)\n"
        "    return lr * sign(m) * abs(g), m\n")


def test_export_a_stored_program_by_id_matches_the_interpreter(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    program = dsl.parse(RULE)
    with Store(db) as store:
        record = store.add_program(program)
    out = tmp_path / "found_opt.py"
    assert main(["export", str(record.id), "--db", db, "--out", str(out)]) == 0
    assert f"optforge program #{record.id}" in capsys.readouterr().out
    spec = importlib.util.spec_from_file_location("found_opt", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    w = torch.randn(4, 3, dtype=torch.float64)
    param = torch.nn.Parameter(w.clone())
    opt = module.Found([param], lr=0.1)
    state = dsl.init_state(program, w)
    for t in range(1, 6):
        g = torch.randn(4, 3, dtype=torch.float64)
        param.grad = g.clone()
        opt.step()
        step, state = dsl.run_step(program, w, g, 0.1, t, state)
        w = w - step
    torch.testing.assert_close(param.detach(), w, rtol=0, atol=1e-12)


def test_export_of_a_missing_id_or_database_is_one_line(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["export", "42", "--db", db, "--out", str(tmp_path / "o.py")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no optforge database" in err
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "o.py").exists()


# ---- the default lr is the rate the campaign tuned (issue #13) --------------------------------

WINNER = ("def winner(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, "
          "weight_decay=0.01):\n"
          "    m = interp(g, m, beta1)\n"
          "    v = interp(g * g, v, beta2)\n"
          "    return lr * (m / (sqrt(v) + eps) + weight_decay * w), m, v\n")


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stored(tmp_path, rule, evaluations):
    """A database holding `rule` with `evaluations` [(stage, suite, best_lr)] in one
    campaign; returns (url, program id, campaign id)."""
    db = f"sqlite:///{tmp_path / 'c.db'}"
    with Store(db) as store:
        camp = store.create_campaign("c13", {}, status="finished")
        record = store.add_program(dsl.parse(rule))
        for stage, suite, best_lr in evaluations:
            store.add_evaluation(record.id, campaign=camp.id, suite=suite, status="ok",
                                 score=1.1, stage=stage, best_lr=best_lr)
    return db, record.id, camp.id


def _lr_default(module, cls):
    return inspect.signature(getattr(module, cls).__init__).parameters["lr"].default


def test_a_stored_winner_defaults_to_the_rate_tuned_at_the_deciding_stage(tmp_path, capsys):
    db, pid, camp = _stored(tmp_path, WINNER, [(1, "small", 0.0061), (2, "medium", 0.0037291),
                                                (3, "validation", 0.0042)])
    out = tmp_path / "winner_opt.py"
    assert main(["export", str(pid), "--db", db, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    note = f"lr defaults to 0.00373, the rate tuned on `medium` (stage 2) in campaign {camp}"
    assert note in printed
    module = _import(out, "winner_opt")
    assert _lr_default(module, "Winner") == 0.00373
    assert note in module.__doc__ and note in module.Winner.__doc__
    assert "held-out `validation` tasks (stage 3) tuned 0.0042" in module.__doc__
    assert module.Winner([torch.nn.Parameter(torch.zeros(2))]).defaults["lr"] == 0.00373


def test_without_stage_2_the_stage_1_rate_is_the_default(tmp_path, capsys):
    db, pid, camp = _stored(tmp_path, WINNER, [(1, "small", 0.0061), (3, "validation", 0.02)])
    out = tmp_path / "s1_opt.py"
    assert main(["export", str(pid), "--db", db, "--out", str(out)]) == 0
    capsys.readouterr()
    module = _import(out, "s1_opt")
    assert _lr_default(module, "Winner") == 0.0061
    assert f"the rate tuned on `small` (stage 1) in campaign {camp}" in module.__doc__


def test_validation_alone_or_no_evaluation_keeps_the_plain_default(tmp_path, capsys):
    db, pid, _ = _stored(tmp_path, WINNER, [(3, "validation", 0.02), (2, "medium", None)])
    out = tmp_path / "plain_opt.py"
    assert main(["export", str(pid), "--db", db, "--out", str(out)]) == 0
    capsys.readouterr()
    module = _import(out, "plain_opt")
    assert _lr_default(module, "Winner") == 0.001
    assert "lr defaults to" not in module.__doc__


def test_lr_option_overrides_stored_and_seed_defaults(tmp_path, capsys):
    db, pid, _ = _stored(tmp_path, WINNER, [(2, "medium", 0.00373)])
    out = tmp_path / "over_opt.py"
    assert main(["export", str(pid), "--db", db, "--out", str(out), "--lr", "0.02"]) == 0
    capsys.readouterr()
    module = _import(out, "over_opt")
    assert _lr_default(module, "Winner") == 0.02
    assert "as given to `optforge export --lr`" in module.__doc__
    seed_out = tmp_path / "lion_opt.py"
    assert main(["export", "lion", "--out", str(seed_out)]) == 0
    assert _lr_default(_import(seed_out, "lion_opt"), "Lion") == 1e-4  # the seed's own
    assert main(["export", "lion", "--out", str(seed_out), "--force", "--lr", "3e-4"]) == 0
    assert _lr_default(_import(seed_out, "lion_opt2"), "Lion") == 3e-4
    capsys.readouterr()
    for bad in ("nan", "-0.1", "inf"):
        assert main(["export", "lion", "--out", str(tmp_path / "bad.py"), "--lr", bad]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--lr" in err
    assert not (tmp_path / "bad.py").exists()


def test_export_says_which_hyperparameters_lost_their_torch_name(tmp_path, capsys):
    rule = WINNER.replace("weight_decay * w", "weight_decay")  # decay mutated into a constant
    db, pid, _ = _stored(tmp_path, rule, [(2, "medium", 0.004)])
    out = tmp_path / "renamed_opt.py"
    assert main(["export", str(pid), "--db", db, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "hyperparameter weight_decay exported as c_weight_decay" in printed
    module = _import(out, "renamed_opt")
    parameters = inspect.signature(module.Winner.__init__).parameters
    assert "c_weight_decay" in parameters and "weight_decay" not in parameters

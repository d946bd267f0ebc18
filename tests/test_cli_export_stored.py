"""`optforge export ID`: a program from the database leaves as a working torch optimizer."""

import importlib.util

import torch

import dsl
from search.cli import main
from store import Store

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

"""`optforge export` on unusual input: a working module, or one line on stderr, a non-zero
exit and nothing written. And the module it writes has the mode a plain `open(..., "w")`
would give it."""

import importlib.util
import os
import stat

import pytest
import torch
from optforge.search.cli import main

from optforge import dsl

# The docstring holds NUL and ESC written as escapes, as a user (or a program) may write them.
ODD_DOC_RULE = ('def odd(w, g, lr, t, m, beta=0.9):\n'
                '    """Momentum. NUL \\x00, ESC \\x1b, CR \\r and a lone surrogate \\ud800."""\n'
                '    m = interp(g, m, beta)\n'
                '    return lr * m, m\n')


def import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def files_in(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def test_a_docstring_with_control_characters_checks_and_exports(tmp_path, capsys):
    """check accepts the rule (the printer and parser carry any docstring), and export agrees:
    it writes a module that imports, keeps the docstring and follows the interpreter."""
    rule = tmp_path / "odd.rule"
    rule.write_text(ODD_DOC_RULE, encoding="utf-8")
    program = dsl.load(rule)
    assert "\x00" in program.doc and "\ud800" in program.doc
    assert main(["check", str(rule)]) == 0
    out = tmp_path / "odd_opt.py"
    assert main(["export", str(rule), "--out", str(out)]) == 0
    capsys.readouterr()
    module = import_file(out, "odd_opt")
    assert program.doc in module.__doc__
    assert dsl.parse(module.RULE_SOURCE) == program
    param = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = module.Odd([param], lr=0.1)
    w, state = param.detach().clone(), dsl.init_state(program, param.detach())
    for t in range(1, 4):
        g = torch.full((3,), 0.5 * t, dtype=torch.float64)
        param.grad = g.clone()
        opt.step()
        step, state = dsl.run_step(program, w, g, 0.1, t, state)
        w = w - step
    torch.testing.assert_close(param.detach(), w, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name, reason", [
    ("float", "builtin"), ("super", "builtin"), ("zip", "builtin"), ("isinstance", "builtin"),
    ("class", "keyword"), ("None", "keyword"), ("my-opt", "identifier"), ("", "identifier"),
    ("torch", "imports or defines"), ("_scalars", "imports or defines"), ("__x", "'__'"),
])
def test_an_unusable_class_name_is_one_line_and_writes_nothing(tmp_path, capsys, name, reason):
    out = tmp_path / "opt.py"
    assert main(["export", "adam", "--out", str(out), "--class-name", name]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"class name {name!r}" in captured.err and reason in captured.err
    assert files_in(tmp_path) == []


def test_a_hyperparameter_python_would_mangle_is_an_argument_of_the_class(tmp_path, capsys):
    rule = tmp_path / "private.rule"
    rule.write_text("def private(w, g, lr, t, m, __beta=0.9):\n    m = interp(g, m, __beta)\n"
                    "    return lr * m, m\n", encoding="utf-8")
    out = tmp_path / "private_opt.py"
    assert main(["export", str(rule), "--out", str(out)]) == 0
    capsys.readouterr()
    module = import_file(out, "private_opt")
    param = torch.nn.Parameter(torch.ones(2))
    opt = module.Private([param], lr=0.1, __beta=0.5)
    assert opt.param_groups[0]["__beta"] == 0.5


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_module_gets_the_mode_the_umask_gives(tmp_path, capsys, umask, mask, mode):
    umask(mask)
    out = tmp_path / "adam_opt.py"
    assert main(["export", "adam", "--out", str(out)]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == mode
    assert files_in(tmp_path) == ["adam_opt.py"]  # no temporary file left behind


def test_force_keeps_the_mode_of_the_file_it_replaces(tmp_path, capsys, umask):
    """As open(..., "w") does: overwriting keeps the existing file's permissions."""
    umask(0o022)
    out = tmp_path / "adam_opt.py"
    out.write_text("# an older export\n")
    os.chmod(out, 0o640)
    assert main(["export", "adam", "--out", str(out), "--force"]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    assert "class Adam(" in out.read_text()
    assert files_in(tmp_path) == ["adam_opt.py"]

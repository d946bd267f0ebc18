"""The torch.optim contract of staged exports (`dsl.export.group`): the clear errors (no
closure, no create_graph, no loss), the docstring's closure protocol, true memory of
factored state, state dict round trips (the Hessian generator included) and the module's
imports. `test_closure_export.py` checks the steps against the interpreter.
"""

from __future__ import annotations

import ast
import io

import pytest
import torch
from optforge.dsl.export import export_module, optimizer_class

from optforge import dsl

from .test_closure_export import (
    RULES,
    batch,
    cls_of,
    exported,
    loss_fn,
    module_of,
    program,
)


@pytest.mark.parametrize("name,reads", [("sam", "grad_at"), ("adahessian_like", "hess"),
                                        ("aegd_like", "loss")])
def test_step_without_a_closure_names_the_optimizer_and_what_it_reads(name, reads):
    cls = cls_of(name)
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    p.grad = torch.ones(3, dtype=torch.float64)
    opt = cls([p])
    with pytest.raises(RuntimeError, match=rf"{cls.__name__} \(rule '{name}'\) reads "
                                           rf"{reads}.*step\(closure\)"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3, dtype=torch.float64))  # nothing moved
    assert "torch.optim.LBFGS" in cls.__doc__ and "def closure():" in cls.__doc__
    assert "torch.optim.LBFGS" in (module_of(cls).__doc__ or "")


def test_hess_without_create_graph_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"create_graph=True"):
        exported(cls_of("adahessian_like"), steps=1, create_graph=False)
    assert "loss.backward(create_graph=True)" in cls_of("adahessian_like").__doc__


def test_a_closure_that_returns_no_loss_is_refused_when_the_rule_reads_it():
    cls = cls_of("aegd_like")
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = cls([p])

    def closure():
        opt.zero_grad()
        (p ** 2).sum().backward()

    with pytest.raises(RuntimeError, match="reads the loss, but the closure returned None"):
        opt.step(closure)


def test_rules_with_only_shapes_or_factored_state_need_no_closure():
    for name in ("shape_scalars", "factored", "clip_global_norm"):
        p = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
        p.grad = torch.full((3, 2), 0.5, dtype=torch.float64)
        cls_of(name)([p]).step()
        assert "def closure():" not in cls_of(name).__doc__


def test_factored_state_keeps_its_true_memory():
    src = """def rowcol(w, g, lr, t, r: row, c: col, beta=0.9):
    r = interp(row_mean(g * g), r, beta)
    c = interp(col_mean(g * g), c, beta)
    return lr * g / sqrt(r * c / (mean(r) + 1e-30) + 1e-30), r, c
"""
    cls = optimizer_class(dsl.parse(src))
    p = torch.nn.Parameter(torch.zeros(1000, 500))
    p.grad = torch.randn(1000, 500)
    opt = cls([p])
    opt.step()
    state = opt.state[p]
    assert state["r"].shape == (1000, 1) and state["c"].shape == (1, 500)
    assert sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor)) == 1500


@pytest.mark.parametrize("name", ["factored", "adahessian_like"])
@pytest.mark.parametrize("path", ["per_param", "foreach"])
def test_state_dict_resume_matches_uninterrupted_training(path, name):
    """Factored state is saved and loaded at its stored shape; the Hessian generator's state
    goes with the state dict, so a resumed run draws the vectors it would have drawn."""
    cls = cls_of(name)
    kw = {"foreach": path == "foreach"}
    whole, _, whole_params = exported(cls, steps=5, **kw)
    _, opt1, params1 = exported(cls, steps=2, **kw)
    buffer = io.BytesIO()
    torch.save(opt1.state_dict(), buffer)
    buffer.seek(0)
    params = [torch.nn.Parameter(p.detach().clone()) for p in params1]
    opt2 = cls(params, lr=0.5, **kw, **({"hessian_seed": 99} if name != "factored" else {}))
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    for t in range(3, 6):
        data = batch(t)

        def closure(data=data):
            opt2.zero_grad()
            loss = loss_fn(params, data)
            loss.backward(create_graph=name != "factored")
            return loss

        opt2.step(closure)
    for i, (p, q) in enumerate(zip(params, whole_params)):
        assert torch.equal(p, q)
        for k, key in enumerate(module_of(cls)._STATE_KEYS):
            assert torch.equal(opt2.state[p][key], whole[-1][1][i][k])
    if name == "factored":
        assert opt2.state[params[0]]["r"].shape == (4, 1)
        assert opt2.state[params[0]]["c"].shape == (1, 5)
        assert opt2.state[params[2]]["c"].shape == (1, 2, 2)


def test_state_of_another_shape_is_refused_at_the_next_step():
    cls = cls_of("factored")
    p = torch.nn.Parameter(torch.ones(4, 5, dtype=torch.float64))
    opt = cls([p])
    p.grad = torch.ones(4, 5, dtype=torch.float64)
    opt.step()
    saved = opt.state_dict()
    saved["state"][0]["r"] = torch.zeros(4, 5, dtype=torch.float64)  # full, not a row
    fresh = cls([p])
    fresh.load_state_dict(saved)
    with pytest.raises(RuntimeError, match=r"state 'r' of a parameter of shape \(4, 5\) has "
                                           r"shape \(4, 5\), but the rule keeps it as row"):
        fresh.step()


def test_a_staged_export_imports_torch_alone():
    for name in RULES:
        source = export_module(program(name))
        imports = {a.name for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Import) for a in node.names}
        assert imports == {"torch"}
        assert not any(isinstance(node, ast.ImportFrom) for node in ast.walk(ast.parse(source)))

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
from optforge.dsl.context import StepContext, rademacher
from optforge.dsl.export import export_module, optimizer_class
from optforge.dsl.interpreter import init_state, run_group_step

from optforge import dsl

from .test_closure_export import (
    RULES,
    batch,
    cls_of,
    exported,
    initial_params,
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


@pytest.mark.parametrize("name", ["sam", "adahessian_like", "factored"])
def test_low_precision_parameters_keep_float32_state(name):
    """bfloat16 parameters: the stages run in float32 (the state too), the parameter is
    rounded once per step; the result stays near the float64 run."""
    cls = cls_of(name)
    params = [torch.nn.Parameter(w.to(torch.bfloat16)) for w in initial_params()]
    opt = cls(params, lr=0.05)
    for t in range(1, 4):
        data = tuple(x.to(torch.bfloat16) for x in batch(t))

        def closure(data=data):
            opt.zero_grad()
            loss = loss_fn(params, data)
            loss.backward(create_graph=name == "adahessian_like")
            return loss

        opt.step(closure)
    want, _, _ = exported(cls, steps=3)
    for p, w in zip(params, want[-1][0]):
        assert p.dtype == torch.bfloat16
        assert all(v.dtype == torch.float32 for v in opt.state[p].values()
                   if isinstance(v, torch.Tensor))
        torch.testing.assert_close(p.detach().double(), w, rtol=0.05, atol=0.05)


def test_a_group_of_mixed_dtypes_is_refused_where_the_rule_spans_the_group():
    cls = cls_of("clip_global_norm")
    a = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float32))
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    with pytest.raises(RuntimeError, match="must share one device and dtype"):
        cls([a, b]).step()
    cls([{"params": [a]}, {"params": [b]}]).step()  # one group each: fine


def test_a_parameter_whose_gradient_is_constant_has_a_zero_hessian_row():
    """A parameter entering the loss linearly has a gradient without a graph even with
    create_graph=True: its Hessian row is zero, not an error; the Rademacher vectors are
    still drawn for every parameter in order."""
    rule = program("adahessian_like")
    p0 = torch.tensor([0.5, -1.0], dtype=torch.float64)
    q0 = torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64)
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    p, q = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(q0.clone())
    opt = cls_of("adahessian_like")([p, q], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p ** 4).sum() + (c * q).sum()
        loss.backward(create_graph=True)
        return loss

    opt.step(closure)
    z = rademacher([p0.shape, q0.shape], torch.Generator().manual_seed(0), torch.float64, "cpu")
    hess = [z[0] * (12 * p0 ** 2) * z[0], torch.zeros(3, dtype=torch.float64)]
    steps, _ = run_group_step(rule, [p0, q0], [4 * p0 ** 3, c], 0.1, 1,
                              [init_state(rule, p0), init_state(rule, q0)],
                              context=StepContext(hess=hess))
    torch.testing.assert_close(p.detach(), p0 - steps[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(q.detach(), q0 - steps[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,calls", [("two_grad_ats", 3), ("sam", 2), ("aegd_like", 1),
                                        ("adahessian_like", 1)])
def test_the_closure_runs_once_plus_once_per_grad_at(name, calls):
    cls = cls_of(name)
    params = [torch.nn.Parameter(w.clone()) for w in initial_params()]
    opt = cls(params, lr=0.05)
    count = []

    def closure():
        count.append(1)
        opt.zero_grad()
        loss = loss_fn(params, batch(1))
        loss.backward(create_graph=name == "adahessian_like")
        return loss

    opt.step(closure)
    opt.step(closure)
    assert len(count) == 2 * calls


def test_optforge_export_writes_a_staged_rule_that_trains_from_its_file(tmp_path, capsys,
                                                                       monkeypatch):
    """`optforge export` of a rule file that reads the loss, hess and grad_at and keeps
    factored state: the written module imports torch alone, needs a closure, trains."""
    import importlib.util

    from optforge.search import cli
    rule = tmp_path / "reach.rule"
    rule.write_text(
        "def reach(w, g, lr, t, r: row, c: col, beta=0.9):\n"
        "    r = interp(row_mean(hess * hess), r, beta)\n"
        "    c = interp(col_mean(g * g), c, beta)\n"
        "    g2 = grad_at(0.01 * g / global_norm(g))\n"
        "    return lr * g2 * sqrt(loss + 1) / sqrt(r * c / (mean(r) + 1e-30) + 1e-30), r, c\n")
    out = tmp_path / "reach_opt.py"
    command = "optforge.search.commands.seeds_export"
    if command not in cli.COMMAND_MODULES:  # as tests/seeds/test_cli_seeds_export.py does
        monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + (command,))
    assert cli.main(["export", str(rule), "--out", str(out)]) == 0
    assert "class Reach" in capsys.readouterr().out
    tree = ast.parse(out.read_text())
    assert {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} == {
        "torch"}
    spec = importlib.util.spec_from_file_location("reach_opt", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = [torch.nn.Parameter(w.clone()) for w in initial_params()]
    opt = module.Reach(params, lr=0.01)
    with pytest.raises(RuntimeError, match=r"reads grad_at, hess, loss"):
        opt.step()
    losses = []
    for t in range(1, 6):
        def closure(t=t):
            opt.zero_grad()
            loss = loss_fn(params, batch(1))
            loss.backward(create_graph=True)
            return loss
        losses.append(float(opt.step(closure).detach()))
    assert losses[-1] < losses[0]
    assert opt.state[params[0]]["r"].shape == (4, 1)


def test_a_copied_or_pickled_optimizer_keeps_its_hessian_generator():
    """torch pickles an optimizer's defaults, state and param groups only; the Hessian
    generator (seed and position) travels too, and still goes with its state dict."""
    import copy
    import pickle

    params = [torch.nn.Parameter(w.clone()) for w in initial_params()]
    opt = cls_of("adahessian_like")(params, lr=0.05, hessian_seed=5)

    def closure():
        opt.zero_grad()
        loss = loss_fn(params, batch(1))
        loss.backward(create_graph=True)
        return loss

    opt.step(closure)
    for other in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert other._hessian_seed == 5
        assert torch.equal(other._hessian_generator.get_state(),
                           opt._hessian_generator.get_state())
        assert torch.equal(other.state_dict()["hessian_generator"],
                           opt._hessian_generator.get_state())


@pytest.mark.parametrize("foreach", [False, True])
def test_per_tensor_staged_parameters_at_different_step_counts(foreach):
    """A factored rule on parameters whose step counts differ (one skips steps without a
    gradient): each follows the interpreter with its own t, foreach included."""
    rule = program("factored")
    gen = torch.Generator().manual_seed(4)
    w0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in [(4, 5), (3, 2, 2)]]
    params = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = cls_of("factored")(params, lr=0.05, foreach=foreach)
    ws, states, ts = [w.clone() for w in w0], [init_state(rule, w) for w in w0], [0, 0]
    for k in range(1, 6):
        for i, p in enumerate(params):
            if i == 1 and k % 2:
                p.grad = None
                continue
            p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            ts[i] += 1
            steps, (states[i],) = run_group_step(rule, [ws[i]], [p.grad.clone()], 0.05, ts[i],
                                                 [states[i]])
            ws[i] = ws[i] - steps[0]
        opt.step()
        for p, w in zip(params, ws):
            torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-14)
    assert [opt.state[p]["step"] for p in params] == [5, 2]

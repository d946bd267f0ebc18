"""Export of unusual but valid input: any docstring, any class name the user may ask for,
hyperparameter names Python would mangle. Each either exports as a working module or is
refused with an `ExportError` naming the reason, before anything is generated.
"""

from __future__ import annotations

import builtins
import dataclasses
import dis
import importlib.util
import inspect

import pytest
import torch
from hypothesis import example, given, settings
from optforge.dsl.export import (
    _MODULE_NAMES,
    ExportError,
    default_class_name,
    export_module,
    optimizer_class,
)
from optforge.dsl.export.names import is_module_name

from optforge import dsl, seeds

from .strategies import docstrings
from .test_export import assert_trajectories_close, module_of, run_free


def exec_module(source: str, name: str = "exported_for_test") -> dict:
    namespace = {"__name__": name}
    exec(compile(source, f"<{name}>", "exec"), namespace)  # noqa: S102 - generated code
    return namespace


def one_step(cls, **hyper) -> torch.Tensor:
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = cls([p], lr=0.1, **hyper)
    p.grad = torch.full((3,), 0.5, dtype=torch.float64)
    opt.step()
    return p.detach()


# ---- 1. any docstring -----------------------------------------------------------------------

ODD_DOCS = [
    "NUL \x00 in a docstring",
    "escape \x1b[31m, bell \x07, DEL \x7f, C1 \x85, form feed \x0c, CR \r, CRLF \r\n.",
    "a lone surrogate \ud800 and a line separator \u2028",
    'three quotes """ inside, and a quote at the end "',
    "a backslash at the end \\",
    'backslash then quotes \\""" and \\"',
    "LaTeX \\frac{1}{2} with a NUL \x00",
]


@settings(max_examples=60, deadline=None)
@given(docstrings())
@example(ODD_DOCS[0])
@example(ODD_DOCS[1])
@example(ODD_DOCS[2])
@example(ODD_DOCS[3])
@example(ODD_DOCS[4])
@example(ODD_DOCS[5])
@example(ODD_DOCS[6])
def test_any_docstring_exports_as_a_valid_module(doc):
    """A program built in Python (no parser in between) with any docstring: the module
    compiles, carries the docstring exactly and its rule source reads back as the program."""
    program = dataclasses.replace(seeds.load_seed("sgd_momentum"), doc=doc)
    module = exec_module(export_module(program, "Opt"))
    assert all(line in module["__doc__"] for line in doc.split("\n"))
    assert dsl.parse(module["RULE_SOURCE"]) == program
    assert torch.isfinite(one_step(module["Opt"])).all()


@pytest.mark.parametrize("doc", ODD_DOCS)
def test_a_module_with_an_odd_docstring_is_written_and_imported(doc, tmp_path):
    """The module's text is plain, printable UTF-8: it can be written and imported."""
    program = dataclasses.replace(seeds.load_seed("adam"), doc=doc)
    path = tmp_path / "odd_doc_opt.py"
    path.write_text(export_module(program, "OddDoc"), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    assert all(c.isprintable() or c in "\n" for c in text)
    spec = importlib.util.spec_from_file_location("odd_doc_opt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doc in module.__doc__
    assert torch.isfinite(one_step(module.OddDoc)).all()


# ---- 2. class names -------------------------------------------------------------------------

@pytest.mark.parametrize("name, reason", [
    ("float", "builtin"), ("super", "builtin"), ("zip", "builtin"), ("isinstance", "builtin"),
    ("len", "builtin"), ("TypeError", "builtin"), ("print", "builtin"),
    ("class", "keyword"), ("None", "keyword"), ("lambda", "keyword"),
    ("9lives", "identifier"), ("a-b", "identifier"), ("", "identifier"), ("my opt", "identifier"),
    ("\ufb01t", "normal form"),  # the ligature 'ﬁ': Python reads the name as 'fit'
    ("torch", "imports or defines"), ("RULE_SOURCE", "imports or defines"),
    ("_number", "imports or defines"), ("_init", "imports or defines"),
    ("_stage2", "imports or defines"), ("global_norm", "imports or defines"),
    ("_STAGES", "imports or defines"), ("_grad_at", "imports or defines"),
    ("__init__", "'__'"), ("__all__", "'__'"), ("__Opt", "'__'"),
])
def test_unusable_class_names_are_refused_with_the_reason(name, reason):
    with pytest.raises(ExportError, match="class name") as err:
        export_module(seeds.load_seed("adam"), name)
    message = str(err.value)
    assert reason in message and "\n" not in message


@pytest.mark.parametrize("name", ["Optimizer", "math", "Adam", "F", "step", "_private", "Ωmega"])
def test_class_names_the_module_does_not_use_work(name):
    """Names the module neither imports, defines nor calls are fine, even torch.optim's."""
    module = exec_module(export_module(seeds.load_seed("adam"), name))
    assert module["__all__"] == [name]
    assert torch.isfinite(one_step(module[name])).all()


def global_names(code) -> set[str]:
    """The global (module or builtin) names `code` and its nested code read or bind."""
    names: set[str] = set()
    class_locals: set[str] = set()
    is_function = bool(code.co_flags & inspect.CO_OPTIMIZED)
    is_module = code.co_name == "<module>"
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"):
            names.add(ins.argval)
        elif ins.opname in ("LOAD_NAME", "STORE_NAME", "DELETE_NAME") and not is_function:
            if is_module:
                names.add(ins.argval)
            elif ins.opname == "STORE_NAME":  # a class attribute
                class_locals.add(ins.argval)
            elif ins.argval not in class_locals:
                names.add(ins.argval)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= global_names(const)
    return names


MANGLED = dsl.parse("def r(w, g, lr, t, m, __beta=0.9, __c__=1.0):\n"
                    "    m = interp(g, m, __beta)\n    return lr * __c__ * m, m\n")


# a staged export (dsl.export.group) with every new feature, and a private-looking name
STAGED = ("def r(w, g, lr, t, r: row, c: col, m, __beta=0.9):\n"
          "    r = interp(row_mean(hess * g), r, __beta)\n"
          "    c = interp(col_mean(g * g), c, __beta)\n"
          "    m = grad_at(0.01 * g / global_norm(g)) * loss / global_sum(rows * cols * numel)\n"
          "    return lr * m * r * c, r, c, m\n")


@pytest.mark.parametrize("name", seeds.seed_names() + ("mangled", "staged"))
def test_every_global_of_an_export_is_a_refused_class_name(name):
    """`_MODULE_NAMES` is complete: whatever global the module reads or binds (apart from the
    class itself) is a builtin, a dunder or one of them, so no accepted class name shadows
    anything the module uses."""
    program = (MANGLED if name == "mangled" else dsl.parse(STAGED) if name == "staged"
               else seeds.load_seed(name))
    source = export_module(program, "ClassUnderTest")
    used = global_names(compile(source, "<export>", "exec")) - {"ClassUnderTest"}
    unrefused = {n for n in used if not is_module_name(n) and n not in dir(builtins)
                 and not n.startswith("__")}
    assert all(n in _MODULE_NAMES for n in used if is_module_name(n)
               and not n.startswith("_stage"))
    assert not unrefused


def test_a_staged_rule_with_a_private_looking_name_takes_its_keywords():
    """The constructor defined outside the class (see the mangling workaround) also sets
    the Hessian seed."""
    cls = optimizer_class(dsl.parse(STAGED), "Staged")
    p = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
    opt = cls([p], __beta=0.5, hessian_seed=3)
    assert opt.defaults["__beta"] == 0.5 and opt._hessian_seed == 3


@pytest.mark.parametrize("rule, expected", [
    ("exception", "ExceptionOptimizer"), ("warning", "WarningOptimizer"),
    ("float", "Float"), ("torch", "Torch"), ("_init", "Init"), ("none", "NoneOptimizer"),
])
def test_default_class_names_are_always_usable(rule, expected):
    program = dsl.parse(f"def {rule}(w, g, lr, t):\n    return lr * g\n")
    assert default_class_name(program) == expected
    module = exec_module(export_module(program))
    assert torch.isfinite(one_step(module[expected])).all()


# ---- 3. hyperparameter names Python would mangle ----------------------------------------------

def test_hyperparameters_named_like_private_attributes_are_keywords_of_the_optimizer():
    """Inside a class body Python turns an argument `__beta` into `_Opt__beta`; the exported
    constructor still takes `__beta=...`, and every path agrees with the interpreter."""
    from optforge.dsl.export import optimizer_class
    cls = optimizer_class(MANGLED, "Opt")
    assert list(inspect.signature(cls).parameters)[:4] == ["params", "lr", "__beta", "__c__"]
    p = torch.nn.Parameter(torch.ones(2))
    opt = cls([p], __beta=0.5, __c__=2.0)
    assert opt.param_groups[0]["__beta"] == 0.5 and opt.param_groups[0]["__c__"] == 2.0
    with pytest.raises(TypeError):
        cls([p], _Opt__beta=0.5)
    hyper = {"__beta": 0.7, "__c__": 0.5}
    for path in ("per_param", "foreach"):
        pairs = run_free(MANGLED, cls, torch.float64, 0.1, hyper=hyper, steps=4,
                         foreach=(path == "foreach"))
        assert_trajectories_close(pairs, 1e-12, 1e-14, path)
    assert module_of(cls)._HYPER_NAMES == ("__beta", "__c__")


def test_the_mangling_workaround_leaves_other_rules_alone():
    source = export_module(seeds.load_seed("adam"), "Adam")
    assert "    def __init__(self, params, lr=0.001, beta1=0.9" in source
    assert "_init" not in source.replace("__init__", "")


@pytest.mark.parametrize("bad", ["not ok", "class", "a-b"])
def test_hyperparameter_names_that_are_not_identifiers_are_refused(bad):
    """Only a program built in Python can have them (the parser refuses them)."""
    program = dataclasses.replace(seeds.load_seed("sgd"), hyperparams=((bad, 1.0),))
    with pytest.raises(ExportError, match="not a Python identifier"):
        export_module(program)

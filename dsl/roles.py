"""Hyperparameter roles: does a rule's `weight_decay` (`beta1`, `momentum`, `eps`) still do what
torch's name promises?

Code around a torch optimizer relies on a few hyperparameter names meaning one thing: a
"no decay on biases" param group sets ``weight_decay=0``; OneCycleLR and CyclicLR cycle
``betas[0]`` or ``momentum``; users tune ``eps`` as a small guard of a denominator. Evolution
keeps the names of a seed's hyperparameters while mutations change what they do, so an
exported winner keeps a conventional name only where the program, read structurally, still
uses the hyperparameter in that role:

* ``weight_decay``, a *decay coefficient*: every read of it is a factor of a product whose
  other factor is either a scalar (``lr * weight_decay``; the product is then read under the
  same rule) or proportional to the parameter: ``w``, a scalar multiple, negation or quotient
  by a scalar of it, or its ``norm``/``rms`` (LARS's ``weight_decay * |w|``). Scalar-only
  uses of such products are allowed too (Adan's step size ``1 / (1 + lr * weight_decay)``),
  and at least one read must reach ``w``. ``weight_decay = 0`` then removes the decay terms.
* ``beta1``, ``beta2``, ... and ``momentum``, an *averaging coefficient*: at least one read
  of it (or of a scalar computed from it: Adopt's ``beta2 * later``, NAdam's schedule) is the
  weight ``a`` of an ``interp(x, y, a)`` that averages a state with a value depending on the
  gradient (a state is one of ``x``, ``y`` or the assigned name), a factor multiplying a
  state's value (heavy-ball ``momentum * buf + g``, Adamax's ``max(beta2 * u, |g| + eps)``),
  or a factor of a gradient term that enters a state's new value (Yogi's
  ``v - (1 - beta2) * sign(v - g * g) * g * g``).
  Other reads (bias corrections ``1 - beta1 ** t``) are allowed.
* ``eps``, a *denominator guard*: every read of it is ``x + eps`` or ``max(x, eps)`` with a
  tensor ``x``, and at least one such sum reaches a divisor (the right operand of ``/`` or the
  argument of ``rsqrt``), possibly through a state (Adamax's ``u``).

A conventional name also needs a default in torch's range for it (a beta in [0, 1);
``weight_decay``, ``momentum``, ``eps`` >= 0): mutations perturb defaults, and a
``beta2 = 2.13`` extrapolates rather than averages, a negative ``weight_decay`` grows the
weights. The exported constructor refuses values outside these ranges, as torch.optim does,
so a name keeps its convention only where its own default is accepted.

A hyperparameter no live statement reads is *unused*. Every seed's conventional names keep
their role (tests/dsl/test_export_faithful.py asserts it). `export_names` turns the roles
into the names an export uses: a conventional name that lost its role becomes ``c_<name>``
(a coefficient of the rule, named after where it came from, that no torch convention knows),
and an unused hyperparameter is dropped from the constructor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .checker import live_statements
from .context import SHAPE_INPUTS
from .ir import Program
from .ops import OPS, OpKind

__all__ = ["CONVENTIONAL", "NEUTRAL_PREFIX", "ExportNames", "export_names", "is_conventional",
           "role_problem", "unused_hyperparameters"]

NEUTRAL_PREFIX = "c_"
_BETA = re.compile(r"beta[1-9][0-9]*\Z")
CONVENTIONAL = ("weight_decay", "momentum", "eps", "beta1, beta2, ...")
"""The names that torch code attaches a meaning to (checked here); other names are free."""

_W_SCALING = frozenset({"mul", "div", "neg"})
_W_REDUCTIONS = frozenset({"norm", "rms"})


def is_conventional(name: str) -> bool:
    return name in ("weight_decay", "momentum", "eps") or _BETA.match(name) is not None


@dataclass(frozen=True)
class _Node:
    """One value of a step: a statement's result (`index` >= 0) or an input (index -1)."""

    index: int
    op: str
    args: tuple  # _Node | float
    target: str
    scalar: bool  # depends only on lr, t, hyperparameters and constants


class _Graph:
    """The live statements of `p` as a dataflow graph of values (reassignment-aware)."""

    def __init__(self, p: Program):
        self.program = p
        self._depends: dict[tuple[int, str], bool] = {}
        live = live_statements(p)
        current: dict[str, _Node] = {}
        for name in ("w", "g"):
            current[name] = _Node(-1, "input", (), name, False)
        for name in ("lr", "t") + SHAPE_INPUTS:  # the shape scalars are fixed numbers
            current[name] = _Node(-1, "input", (), name, True)
        for name in ("loss", "hess"):  # data, as g is
            current[name] = _Node(-1, "input", (), name, False)
        for name, _ in p.hyperparams:
            current[name] = _Node(-1, "hyper", (), name, True)
        self.state_inputs = {s: _Node(-1, "state", (), s, False) for s in p.state}
        current.update(self.state_inputs)
        self.inputs = dict(current)
        self.nodes: list[_Node] = []
        for i, s in enumerate(p.body):
            if i not in live:
                continue
            args = tuple(current[a] if isinstance(a, str) else float(a) for a in s.args)
            scalar = all(not isinstance(a, _Node) or a.scalar for a in args) and (
                OPS[s.op].kind is not OpKind.GRADIENT)
            node = _Node(i, s.op, args, s.target, scalar)
            self.nodes.append(node)
            current[s.target] = node
        self.returns = [current[a] if isinstance(a, str) else float(a) for a in p.returns]
        # the value a state slot has after the step feeds the next step's state input
        self.carried = {s: r for s, r in zip(p.state, self.returns[1:])}

    def readers(self, node: _Node) -> list[_Node]:
        return [n for n in self.nodes if any(a is node for a in n.args)]

    def returned(self, node: _Node) -> bool:
        return any(r is node for r in self.returns)

    def reaches(self, sources: set[int], test) -> bool:
        """Whether a value computed from the nodes `sources` (by id) is read where
        `test(reader, argument position)` holds, across steps through state."""
        tainted = set(sources)
        for _ in range(len(self.program.state) + 2):
            for n in self.nodes:
                for k, a in enumerate(n.args):
                    if isinstance(a, _Node) and id(a) in tainted:
                        if test(n, k):
                            return True
                        tainted.add(id(n))
            grown = {id(self.state_inputs[s]) for s, r in self.carried.items()
                     if isinstance(r, _Node) and id(r) in tainted}
            if grown <= tainted:
                return False
            tainted |= grown
        return False

    def feeds_state(self, node: _Node) -> bool:
        """Whether `node`'s value enters a state's new value in the same step."""
        tainted = {id(node)}
        for n in self.nodes:
            if any(isinstance(a, _Node) and id(a) in tainted for a in n.args):
                tainted.add(id(n))
        return any(isinstance(r, _Node) and id(r) in tainted for r in self.carried.values())

    def depends_on(self, node, name: str) -> bool:
        """Whether `node` is computed from the input or state `name` (in this step)."""
        if not isinstance(node, _Node):
            return False
        key = (id(node), name)
        if key not in self._depends:
            if node.index < 0:
                # the Hessian estimate is gradient information too (AdaHessian's beta2)
                self._depends[key] = node.op in ("input", "state") and (
                    node.target == name or (name == "g" and node.target == "hess"))
            elif name == "g" and OPS[node.op].kind is OpKind.GRADIENT:
                self._depends[key] = True  # grad_at(e) is a gradient
            else:
                self._depends[key] = any(self.depends_on(a, name) for a in node.args)
        return self._depends[key]


def _is_state_value(g: _Graph, node) -> bool:
    return isinstance(node, _Node) and (node.op == "state" or
                                        (node.index >= 0 and node.target in g.program.state))


def _proportional_to_w(node) -> bool:
    if not isinstance(node, _Node) or node.scalar:
        return False
    if node.index < 0:
        return node.op == "input" and node.target == "w"
    if node.op in _W_REDUCTIONS or node.op == "neg":
        return _proportional_to_w(node.args[0])
    if node.op == "mul":
        a, b = node.args
        return ((_proportional_to_w(a) and _scalar(b)) or (_proportional_to_w(b) and _scalar(a)))
    if node.op == "div":
        return _proportional_to_w(node.args[0]) and _scalar(node.args[1])
    return False


def _scalar(a) -> bool:
    return not isinstance(a, _Node) or a.scalar


def _decay_problem(g: _Graph, hp: _Node) -> str | None:
    decays = 0
    work = [hp]
    seen: set[int] = set()
    while work:
        n = work.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if g.returned(n):
            return "it is returned as a value, not multiplied by w"
        for r in g.readers(n):
            if r.op == "mul":
                other = r.args[1] if r.args[0] is n else r.args[0]
                if _proportional_to_w(other):
                    decays += 1
                    continue
                if _scalar(other):
                    work.append(r)
                    continue
                return f"it multiplies a tensor that is not w ({_where(g, r)})"
            if r.scalar:
                continue  # a step size such as Adan's 1 / (1 + lr * weight_decay)
            return f"it is an operand of {r.op}(...) ({_where(g, r)}), not a factor of w"
    if not decays:
        return "no read of it multiplies w"
    return None


def _averaging_problem(g: _Graph, hp: _Node) -> str | None:
    coefficient: set[int] = {id(hp)}
    for n in g.nodes:  # scalars computed from it (in program order)
        if n.scalar and any(isinstance(a, _Node) and id(a) in coefficient for a in n.args):
            coefficient.add(id(n))

    def is_coefficient(a) -> bool:
        return isinstance(a, _Node) and id(a) in coefficient

    for n in g.nodes:
        if n.op == "interp" and is_coefficient(n.args[2]):
            x, y = n.args[0], n.args[1]
            with_state = (_is_state_value(g, x) or _is_state_value(g, y)
                          or n.target in g.program.state)
            if with_state and (g.depends_on(x, "g") or g.depends_on(y, "g")):
                return None
        if n.op == "mul" and not n.scalar:
            a, b = n.args
            if (is_coefficient(a) and _is_state_value(g, b)) or (
                    is_coefficient(b) and _is_state_value(g, a)):
                return None
            other = b if is_coefficient(a) else a if is_coefficient(b) else None
            if other is not None and g.depends_on(other, "g") and g.feeds_state(n):
                return None
    return "it is not the coefficient of an average of the gradient into a state"


def _guard_problem(g: _Graph, hp: _Node) -> str | None:
    sums: set[int] = set()
    if g.returned(hp):
        return "it is returned as a value"
    for r in g.readers(hp):
        if r.op in ("add", "max") and any(a is not hp and not _scalar(a) for a in r.args):
            sums.add(id(r))
            continue
        return f"it is an operand of {r.op}(...) ({_where(g, r)}), not added to a tensor"

    def divisor(n: _Node, k: int) -> bool:
        return (n.op == "div" and k == 1) or n.op == "rsqrt"

    if not g.reaches(sums, divisor):
        return "it is never part of a denominator"
    return None


def _where(g: _Graph, n: _Node) -> str:
    """Where a read happens, for a message: the variable it computes, or the step."""
    while n.target.startswith("_"):  # a temporary: say what it is part of
        readers = g.readers(n)
        if not readers:
            if g.returns[0] is n:
                return "in the step"
            return "in a state's new value" if g.returned(n) else "in a temporary"
        n = readers[0]
    return f"computing {n.target}"


def role_problem(p: Program, name: str) -> str | None:
    """Why the hyperparameter `name` of `p` does not play the role its conventional name
    promises (see the module doc), or None when it does or when the name is not one of the
    conventional ones. An unused hyperparameter's problem is "it is never used"."""
    if not is_conventional(name):
        return None
    g = _Graph(p)
    hp = g.inputs[name]
    if not g.readers(hp) and not g.returned(hp):
        return "it is never used"
    if name == "weight_decay":
        problem = _decay_problem(g, hp)
    elif name == "eps":
        problem = _guard_problem(g, hp)
    else:
        problem = _averaging_problem(g, hp)
    return problem or _range_problem(name, p.hyper_defaults[name])


def _range_problem(name: str, value: float) -> str | None:
    """torch.optim's ranges: a beta in [0, 1), weight_decay, momentum, eps >= 0."""
    if _BETA.match(name):
        if not 0.0 <= value < 1.0:
            return f"its value {value:g} is outside [0, 1), where an average's weight lies"
    elif not 0.0 <= value:
        return f"its value {value:g} is negative, which torch refuses for {name}"
    return None


def unused_hyperparameters(p: Program) -> list[str]:
    g = _Graph(p)
    return [n for n, _ in p.hyperparams
            if not g.readers(g.inputs[n]) and not g.returned(g.inputs[n])]


@dataclass(frozen=True)
class ExportNames:
    """The exported name of each hyperparameter: `names[h]` is the constructor's keyword for
    `h`, or None when `h` is unused and dropped; `reasons[h]` says why a name changed."""

    names: dict[str, str | None]
    reasons: dict[str, str]

    @property
    def renamed(self) -> dict[str, str | None]:
        return {h: n for h, n in self.names.items() if n != h}


def export_names(p: Program, reserved: frozenset[str] = frozenset()) -> ExportNames:
    """Names for the hyperparameters of `p` on export (see the module doc). New names avoid
    every hyperparameter name of `p` and `reserved`."""
    unused = set(unused_hyperparameters(p))
    taken = {n for n, _ in p.hyperparams} | set(reserved)
    names: dict[str, str | None] = {}
    reasons: dict[str, str] = {}
    for h, _ in p.hyperparams:
        if h in unused:
            names[h] = None
            reasons[h] = "the rule never uses it"
            continue
        problem = role_problem(p, h)
        if problem is None:
            names[h] = h
            continue
        new = NEUTRAL_PREFIX + h
        while new in taken:
            new += "_"
        taken.add(new)
        names[h] = new
        reasons[h] = problem
    return ExportNames(names, reasons)

"""The intermediate representation: a rule is a flat list of single-op statements.

    def lion(w, g, lr, t, m, beta1=0.9, beta2=0.99, weight_decay=0.0):
        c = interp(g, m, beta1)
        m = interp(g, m, beta2)
        return lr * (sign(c) + weight_decay * w), m

is the `Program`

    state       = ("m",)
    hyperparams = (("beta1", 0.9), ("beta2", 0.99), ("weight_decay", 0.0))
    body        = (c = interp(g, m, beta1), m = interp(g, m, beta2), _3 = sign(c),
                   _4 = mul(weight_decay, w), _5 = add(_3, _4), _6 = mul(lr, _5))
    returns     = ("_6", "m")

An argument is a variable name (`str`) or a constant (`float`). Variables may be reassigned
(state updates are reassignments); a read sees the latest assignment before it.

Temporaries are the values of nested sub-expressions. They are named by position: the
statement at index i (0-based) that defines a temporary names it ``_{i+1}``, and a temporary
is assigned exactly once. `renumber_temps` restores this invariant after an edit; the parser
and every pass produce it, which is what makes ``parse(format_program(p)) == p`` hold.

Everything here is immutable; passes are functions from programs to programs or values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Union

from .context import CONTEXT_INPUTS
from .ops import OPS
from .slots import SlotShape

Arg = Union[str, float]

INPUTS: tuple[str, ...] = ("w", "g", "lr", "t")
"""The fixed leading parameters of every rule: parameter, gradient, learning rate and the
1-based step count. `w`, `g` are tensors; `lr`, `t` are scalars."""

SCALAR_INPUTS = frozenset({"lr", "t"})

# Names a rule may read without declaring them (`dsl.context`): the loss, the Hessian
# estimate and the matrix view's shape. Reserved: no parameter, slot or variable takes them.
RESERVED: tuple[str, ...] = INPUTS + CONTEXT_INPUTS

_TEMP = re.compile(r"_[0-9]+\Z")


def is_temp(name: Arg) -> bool:
    return isinstance(name, str) and _TEMP.match(name) is not None


def temp_name(index: int) -> str:
    """The name of a temporary defined by the statement at 0-based `index`."""
    return f"_{index + 1}"


@dataclass(frozen=True, slots=True)
class Stmt:
    """``target = op(*args)``."""

    target: str
    op: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Origin:
    """Where a parsed program came from; used for positioned diagnostics. Not part of a
    program's identity (excluded from equality and hashing)."""

    filename: str
    source: str
    def_pos: tuple[int, int]  # (line, col) of the `def`, 1-based
    stmt_pos: tuple[tuple[int, int], ...]  # per statement of the body
    param_pos: dict[str, tuple[int, int]] = field(default_factory=dict)
    return_pos: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Program:
    name: str
    state: tuple[str, ...]
    hyperparams: tuple[tuple[str, float], ...]
    body: tuple[Stmt, ...]
    returns: tuple[Arg, ...]  # the step, then the new value of each state slot in order
    doc: str = ""
    origin: Origin | None = field(default=None, compare=False, hash=False, repr=False)
    # state slots stored at a reduced shape (`dsl.slots`), in state order; a slot not named
    # here is FULL. Storage only: it never changes what the rule computes.
    slot_shapes: tuple[tuple[str, SlotShape], ...] = ()

    def slot_shape(self, slot: str) -> SlotShape:
        return dict(self.slot_shapes).get(slot, SlotShape.FULL)

    @property
    def params(self) -> tuple[str, ...]:
        return INPUTS + self.state + tuple(n for n, _ in self.hyperparams)

    @property
    def hyper_defaults(self) -> dict[str, float]:
        return dict(self.hyperparams)

    @property
    def step(self) -> Arg:
        return self.returns[0]

    def with_body(self, body: Iterable[Stmt], returns: Iterable[Arg] | None = None) -> "Program":
        """A copy with a new body (and returns), temporaries renumbered, origin dropped."""
        new = replace(self, body=tuple(body), origin=None,
                      returns=self.returns if returns is None else tuple(returns))
        return renumber_temps(new)


def renumber_temps(p: Program) -> Program:
    """Rename temporaries so that the one defined at statement i is ``_{i+1}``."""
    mapping: dict[str, str] = {}
    body: list[Stmt] = []
    changed = False
    for i, s in enumerate(p.body):
        args = tuple(mapping.get(a, a) if isinstance(a, str) else a for a in s.args)
        target = s.target
        if is_temp(target):
            mapping[target] = temp_name(i)
            target = temp_name(i)
        if target != s.target or args != s.args:
            changed = True
            s = Stmt(target, s.op, args)
        body.append(s)
    returns = tuple(mapping.get(a, a) if isinstance(a, str) else a for a in p.returns)
    if not changed and returns == p.returns:
        return p
    return replace(p, body=tuple(body), returns=returns)


def iter_reads(p: Program) -> Iterator[tuple[int, Arg]]:
    """(statement index, argument) for every argument read; returns use index len(body)."""
    for i, s in enumerate(p.body):
        for a in s.args:
            yield i, a
    for a in p.returns:
        yield len(p.body), a


def validate(p: Program) -> None:
    """Internal invariants of the IR (not user errors: the parser and checker report those).
    Raises ValueError naming the first violation."""
    if not p.returns or len(p.returns) != 1 + len(p.state):
        raise ValueError(f"{p.name}: returns must be the step and one value per state slot")
    defined = set(p.params) | set(CONTEXT_INPUTS)
    hyper = p.hyper_defaults
    for slot, shape in p.slot_shapes:
        if slot not in p.state or shape is SlotShape.FULL or not isinstance(shape, SlotShape):
            raise ValueError(f"{p.name}: slot shape {slot!r}: {shape!r} names no reduced "
                             f"state slot")
    for i, s in enumerate(p.body):
        op = OPS.get(s.op)
        if op is None:
            raise ValueError(f"{p.name}: statement {i}: unknown op {s.op!r}")
        if len(s.args) != op.arity:
            raise ValueError(f"{p.name}: statement {i}: {s.op} takes {op.arity} arguments")
        for a in s.args:
            if isinstance(a, str) and a not in defined:
                raise ValueError(f"{p.name}: statement {i}: {a!r} read before assignment")
        if is_temp(s.target) and s.target != temp_name(i):
            raise ValueError(f"{p.name}: statement {i}: temporary {s.target!r} misnumbered")
        if s.target in RESERVED or s.target in hyper:
            raise ValueError(f"{p.name}: statement {i}: assigns input {s.target!r}")
        defined.add(s.target)
    for a in p.returns:
        if isinstance(a, str) and a not in defined:
            raise ValueError(f"{p.name}: return reads undefined {a!r}")

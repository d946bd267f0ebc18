"""Bounds on the simplifier's algebra (see `dsl.simplifier`'s module doc): the power bound,
the expansion estimate and the CPU-time deadline. How each op multiplies out is read from
its sympy form (`dsl.sympy_forms.Shape`), not from a list of op names."""

from __future__ import annotations

import math
import signal
import threading

from .printer import Expr, Node
from .sympy_forms import Shape, forms

__all__ = ["MAX_EXPANDED_TERMS", "MAX_POWER", "SYMPY_SIMPLIFY_MAX_NODES", "algebra_bound",
           "expanded_terms"]

SYMPY_SIMPLIFY_MAX_NODES = 40  # sympy.simplify is slow on big trees; auto-evaluation only
MAX_POWER = 64  # largest product of exponents on a path of an expression sympy may see
MAX_EXPANDED_TERMS = 128  # seeds reach 18; sympy.simplify takes 4 s on 969 terms


class _BoundHit(BaseException):
    """A hard bound was hit. A BaseException, so that no ``except Exception`` on the way
    (in sympy, in torch) swallows it."""


def algebra_bound(tree: Expr) -> str | None:
    """Why `tree` may not be handed to sympy (the power bound, see module doc), or None."""
    power = _path_power(tree)
    if power > MAX_POWER:
        return f"an exponent of magnitude {power:.3g} exceeds {MAX_POWER}"
    return None


def _path_power(tree: Expr) -> float:
    """The largest product of exponent weights on a path from `tree`'s root to a leaf."""
    if not isinstance(tree, Node):
        return 1.0
    return _exponent_weight(tree) * max(_path_power(c) for c in tree.children)


def _exponent_weight(node: Node) -> float:
    shape, power = forms().shapes[node.op]
    if shape is Shape.POWER:
        return float(power)
    if shape is not Shape.POWER_OF_ARG:
        return 1.0
    exponent = node.children[1]
    if isinstance(exponent, float):
        return max(1.0, abs(exponent))
    return max(1.0, _constant_magnitudes(exponent))


def _constant_magnitudes(tree: Expr) -> float:
    if isinstance(tree, Node):
        return sum(_constant_magnitudes(c) for c in tree.children)
    return abs(tree) if isinstance(tree, float) else 0.0


def expanded_terms(tree: Expr, cap: int = MAX_EXPANDED_TERMS) -> int:
    """An upper estimate of the number of terms of `tree` multiplied out, as `sympy.expand`
    might: a name or constant is 1 term, ``a + b`` has ``|a| + |b|``, ``a * b`` and ``a / b``
    ``|a| |b|``, ``a ** n`` the ``C(n + |a| - 1, n)`` monomials of degree ``n = ceil(exponent
    weight)`` in ``|a|`` terms, and any other function is 1 term (its arguments are counted on
    their own: the estimate is the largest over all subexpressions). Counts stop at
    ``cap + 1``; call it after `algebra_bound`, which keeps ``n`` small."""
    if not isinstance(tree, Node):
        return 1
    inner = [expanded_terms(c, cap) for c in tree.children]
    if max(inner) > cap:
        return cap + 1
    shape, _ = forms().shapes[tree.op]
    if shape is Shape.SUM:
        n = sum(inner)
    elif shape is Shape.PRODUCT:
        n = math.prod(inner)
    elif shape in (Shape.POWER, Shape.POWER_OF_ARG):
        degree = math.ceil(min(_exponent_weight(tree), MAX_POWER))
        n = math.comb(degree + inner[0] - 1, degree)
    else:
        n = 1
    return min(n, cap + 1)


class _CpuDeadline:
    """Raise `_BoundHit` once, in the main thread, after `seconds` of the process's CPU time
    (a one-shot ``ITIMER_VIRTUAL`` timer). Python runs the handler between two bytecodes, so
    this interrupts sympy's pure-Python loops but not one long C call, which the structural
    bounds rule out. Outside the main thread, under another SIGVTALRM handler, or inside
    another deadline it does nothing. Our handler stays installed once set (disarmed it
    ignores the signal): restoring the default, which ends the process, could race with a
    signal still in flight."""

    _armed: _CpuDeadline | None = None  # the deadline whose timer runs, if any

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = False

    def start(self) -> None:
        if (_CpuDeadline._armed is not None or not hasattr(signal, "setitimer")
                or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGVTALRM) not in (signal.SIG_DFL, _on_timer)):
            return
        signal.signal(signal.SIGVTALRM, _on_timer)
        _CpuDeadline._armed = self
        self.started = True
        signal.setitimer(signal.ITIMER_VIRTUAL, self.seconds)

    def stop(self) -> None:
        if self.started:
            _CpuDeadline._armed = None
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            self.started = False


def _on_timer(signum, frame) -> None:
    deadline = _CpuDeadline._armed
    if deadline is not None:
        _CpuDeadline._armed = None  # one shot: once raised, never again
        raise _BoundHit(f"CPU time exceeds {deadline.seconds:g} s")


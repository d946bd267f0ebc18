"""Three identities of a program, from strict to loose, for the search's duplicate caches.

* `structural_hash`: the dataflow graph from the inputs to the returns, as a Merkle hash.
  Variable names, statement order of independent statements and dead code do not change it.
* `canonical_hash`: the same after normalising what cannot change behaviour: constant
  folding, sorted arguments of commutative ops, the symmetry
  ``interp(x, y, a) == interp(y, x, 1 - a)``, and dropping state that never affects the step.
  Commutativity and the interp symmetry are rules of `dsl.rewrites`, read from there.
* `fingerprint`: behaviour. The rule runs in float64 for a few steps on fixed probe problems
  (a matrix and a vector parameter on a noisy quadratic) and the trajectory, rounded to 6
  significant digits, is hashed; two rules with equal fingerprints behave the same on the
  probes, as in AutoML-Zero's functional-equivalence cache.
"""

from __future__ import annotations

import hashlib

import torch

from .checker import live_states
from .interpreter import init_state, run_step
from .ir import INPUTS, Arg, Program
from .ops import fold_constant
from .rewrites import commutative_ops, interp_weight_complement

__all__ = ["canonical_hash", "fingerprint", "probe_trajectory", "structural_hash"]

_COMMUTATIVE = commutative_ops()  # op(x, y) == op(y, x): arguments sorted
# interp(x, y, a) == interp(y, x, c - a): the swapped argument positions and c
_SWAP_FIRST, _SWAP_SECOND, _COMPLEMENT = interp_weight_complement()


def _digest(*parts: bytes) -> bytes:
    return hashlib.blake2b(b"\x00".join(parts), digest_size=16).digest()


def _const(value: float) -> bytes:
    return b"c" + repr(float(value) + 0.0).encode()


def _leaves(p: Program, states: tuple[str, ...]) -> dict[str, bytes]:
    leaves = {name: b"in:" + name.encode() for name in INPUTS}
    for k, s in enumerate(states):
        leaves[s] = b"s%d" % k
    for j, (h, default) in enumerate(p.hyperparams):
        leaves[h] = b"h%d:" % j + repr(float(default)).encode()
    return leaves


def structural_hash(p: Program) -> str:
    values = _leaves(p, p.state)

    def arg(a: Arg) -> bytes:
        return values[a] if isinstance(a, str) else _const(a)

    for s in p.body:
        values[s.target] = _digest(s.op.encode(), *(arg(a) for a in s.args))
    return _digest(b"returns", *(arg(a) for a in p.returns)).hex()


def _canonical_const(value: float) -> bytes:
    # 12 significant digits: `1 - 0.7` and `0.3` are one constant here
    return _const(float(f"{value:.12g}"))


def _interp_weight(a: float) -> bytes:
    """A constant interp weight to 12 decimal places, not 12 significant digits: flipping
    ``interp(x, y, a)`` to ``interp(y, x, 1 - a)`` and back computes ``1 - (1 - a)``, which is
    off from `a` by up to half an ulp of 1 (1.1e-16): a relative error of 1e-8 for a = 1e-8."""
    return _const(round(a, 12) + 0.0)  # + 0.0: -0.0 and 0.0 are one weight


def canonical_hash(p: Program) -> str:
    live = live_states(p)
    kept = tuple(s for s in p.state if s in live)
    values: dict[str, bytes | float] = dict(_leaves(p, kept))
    for s in p.state:  # dead state reads as a distinct but anonymous leaf
        values.setdefault(s, b"dead-state")

    def arg(a: Arg) -> bytes | float:
        return values[a] if isinstance(a, str) else float(a)

    complements: dict[bytes, bytes | float] = {}  # digest of `c - a` -> a

    def key(v: bytes | float) -> bytes:
        return _canonical_const(v) if isinstance(v, float) else v

    def complement(a: bytes | float) -> bytes | float:
        if isinstance(a, float):
            return _COMPLEMENT - a
        if a in complements:  # c - (c - b) = b
            return complements[a]
        d = _digest(b"sub", key(_COMPLEMENT), a)
        complements[d] = a
        return d

    def node(op: str, args: list[bytes | float]) -> bytes | float:
        if all(isinstance(a, float) for a in args):
            folded = fold_constant(op, args)
            if folded is not None:
                return folded
        if op == "sub" and args[0] == _COMPLEMENT:
            return complement(args[1])
        if op == "interp":
            x, y, a = args[_SWAP_FIRST], args[_SWAP_SECOND], args[2]
            if key(x) == key(y):  # interp(x, x, a) = x
                return x
            if key(x) > key(y):  # interp(x, y, a) = interp(y, x, 1 - a)
                args = [y, x, complement(a)]
        keys = [key(a) for a in args]
        if op == "interp" and isinstance(args[2], float):
            keys[2] = _interp_weight(args[2])
        if op in _COMMUTATIVE:
            keys.sort()
        return _digest(op.encode(), *keys)

    for s in p.body:
        values[s.target] = node(s.op, [arg(a) for a in s.args])
    outs = [p.returns[0]] + [p.returns[1 + p.state.index(s)] for s in kept]
    return _digest(b"returns", *(key(arg(a)) for a in outs)).hex()


# ---- behaviour -----------------------------------------------------------------------------

PROBE_SHAPES = ((5, 3), (4,))
PROBE_STEPS = 6
PROBE_LR = 0.05
FINGERPRINT_DIGITS = 6


def _probe_problem(shape: tuple[int, ...], seed: int):
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    curvature = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 + 0.1
    noise = [0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
             for _ in range(PROBE_STEPS)]
    return w0, curvature, noise


_PROBES = tuple(_probe_problem(shape, seed) for seed, shape in enumerate(PROBE_SHAPES))


def probe_trajectory(p: Program, steps: int = PROBE_STEPS) -> list[torch.Tensor]:
    """The parameters after each step of `p` (hyperparameters at their defaults, learning
    rate `PROBE_LR`) on each fixed probe: a noisy quadratic ``g = curvature * w + noise``."""
    out = []
    with torch.no_grad():
        for w, curvature, noise in _PROBES:
            state = init_state(p, w)
            for t in range(1, steps + 1):
                g = curvature * w + noise[(t - 1) % len(noise)]
                step, state = run_step(p, w, g, PROBE_LR, t, state)
                w = w - step
                out.append(w)
    return out


def fingerprint(p: Program) -> str:
    trajectory = torch.cat([w.reshape(-1) for w in probe_trajectory(p)])
    text = ",".join(f"{x:.{FINGERPRINT_DIGITS}g}" for x in (trajectory + 0.0).tolist())
    return _digest(b"fingerprint", text.encode()).hex()

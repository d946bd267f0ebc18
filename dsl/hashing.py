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

The context inputs (`loss`, `hess`, `rows`, ...) are leaves like `w` and `g`; whole-model ops
and `grad_at` are ops like the others (their digests hash their arguments). The factored
storage of state slots (`Program.slot_shapes`) is part of the structural hash (a rule that
keeps less memory is another rule) but not of the canonical hash or the fingerprint (it
never changes what a rule computes). A rule that reads the loss, the curvature or the
gradient elsewhere, or calls a whole-model op, runs on the two probes as one group, with the
probe problem's exact loss, Hessian diagonal and gradients (`probe_context`).
"""

from __future__ import annotations

import hashlib

import torch

from .checker import live_states
from .context import CONTEXT_INPUTS, StepContext
from .interpreter import init_state, run_group_step, run_step
from .ir import INPUTS, Arg, Program
from .needs import needs
from .ops import OPS, OpKind, fold_constant
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
    leaves = {name: b"in:" + name.encode() for name in INPUTS + CONTEXT_INPUTS}
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
    # the storage of factored slots, by slot position (a rule without any hashes as before)
    storage = [b"slots"] + [b"s%d:" % p.state.index(slot) + shape.value.encode()
                            for slot, shape in p.slot_shapes] if p.slot_shapes else []
    return _digest(b"returns", *(arg(a) for a in p.returns), *storage).hex()


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


def _reads_the_group(p: Program) -> bool:
    """Whether `p` reads more than one parameter's own values: a whole-model op, grad_at,
    the loss or the curvature (the shape scalars are each parameter's own)."""
    return bool(needs(p) & {"loss", "hess", "grad_at"}) or any(
        s.op in OPS and OPS[s.op].kind is OpKind.GLOBAL for s in p.body)


def probe_context(ws, curvatures, noises) -> StepContext:
    """The context of a step on the noisy quadratic ``f(w) = sum(curvature * w ** 2 / 2 +
    noise * w)`` over the group `ws`: its value, its exact Hessian diagonal (which a
    Hutchinson estimate with ±1 vectors gives exactly on a diagonal quadratic) and its
    gradient at ``w + e``."""
    loss = sum((0.5 * c * w * w + n * w).sum() for w, c, n in zip(ws, curvatures, noises))
    return StepContext(
        loss=loss, hess=list(curvatures),
        grad_at=lambda es: [c * (w + e) + n for w, c, n, e in zip(ws, curvatures, noises, es)])


def _group_trajectory(p: Program, steps: int) -> list[torch.Tensor]:
    """`probe_trajectory` of a rule that reads the group: both probes as one group."""
    ws = [w for w, _, _ in _PROBES]
    curvatures = [c for _, c, _ in _PROBES]
    states = [init_state(p, w) for w in ws]
    per_probe: list[list[torch.Tensor]] = [[] for _ in ws]
    for t in range(1, steps + 1):
        noises = [noise[(t - 1) % len(noise)] for _, _, noise in _PROBES]
        gs = [c * w + n for w, c, n in zip(ws, curvatures, noises)]
        context = probe_context(ws, curvatures, noises)
        stepped, states = run_group_step(p, ws, gs, PROBE_LR, t, states, context=context)
        ws = [w - step for w, step in zip(ws, stepped)]
        for out, w in zip(per_probe, ws):
            out.append(w)
    return [w for out in per_probe for w in out]


def probe_trajectory(p: Program, steps: int = PROBE_STEPS) -> list[torch.Tensor]:
    """The parameters after each step of `p` (hyperparameters at their defaults, learning
    rate `PROBE_LR`) on each fixed probe: a noisy quadratic ``g = curvature * w + noise``;
    probe by probe, each step's parameters in turn. A rule that reads the group (see the
    module doc) runs on both probes as one group."""
    if _reads_the_group(p):
        with torch.no_grad():
            return _group_trajectory(p, steps)
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

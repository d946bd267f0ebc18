"""Step time of exported optimizers against the references they replace (not a test).

    python bench/export_speed.py [--tensors 60] [--size 200000] [--threads 2] [--rounds 30]
                                 [--baseline /path/to/another/checkout]

Every contender owns a copy of the same parameters (60 float32 tensors of 200,000 entries,
12M parameters by default) and reads the same gradients. After warm-up (which includes
torch.compile), the contenders take turns, one step each per round, each exported optimizer
right after the reference it is compared with, so that all ratios come from the same run
under the same machine load. Printed: each contender's median step time, the ratio of the
medians, and the median over rounds of the ratio of the two adjacent steps (less sensitive
to other processes on the machine). The issue's targets:

  exported AdamW, compile=True   <= 1.1 x torch.optim.AdamW(fused=True)
  exported Lion,  compile=True   <= 0.5 x lion_pytorch.Lion
  exported AdamW, default path   <= 1.2 x torch.optim.AdamW(foreach=False)

With --baseline DIR, the exports of another optforge checkout (DIR, e.g. the main branch)
run in the same rounds, each right after this checkout's export of the same rule and path,
and the ratios "this checkout / baseline" are printed too. The baseline's exported sources
are made by a subprocess that imports DIR's optforge; they need only torch, so both load in
this process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optforge.dsl.export import optimizer_class  # noqa: E402

from optforge import seeds  # noqa: E402


def handwritten_compiled_lion():
    """A hand-written torch.compile'd Lion step over lists, for orientation."""
    @torch.compile(dynamic=False)
    def lion_step(params, grads, exp_avgs, lr, beta1, beta2):
        for p, g, m in zip(params, grads, exp_avgs):
            p.add_(torch.sign(m.lerp(g, 1 - beta1)), alpha=-lr)
            m.lerp_(g, 1 - beta2)

    class CompiledLion(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-4, betas=(0.9, 0.99)):
            super().__init__(params, {"lr": lr, "betas": betas})

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                ps = [p for p in group["params"] if p.grad is not None]
                ms = []
                for p in ps:
                    state = self.state[p]
                    if not state:
                        state["exp_avg"] = torch.zeros_like(p)
                    ms.append(state["exp_avg"])
                lion_step(ps, [p.grad for p in ps], ms, group["lr"], *group["betas"])
    return CompiledLion


def baseline_classes(checkout: str) -> dict[str, type]:
    """AdamW and Lion as exported by the optforge checkout at `checkout`."""
    code = ("import json; from optforge import seeds; "
            "from optforge.dsl.export import export_module; "
            "print(json.dumps({n: export_module(seeds.load_seed(n), c) "
            "for n, c in (('adamw', 'AdamW'), ('lion', 'Lion'))}))")
    env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=checkout, check=True,
                         capture_output=True, text=True).stdout
    classes = {}
    for name, source in json.loads(out).items():
        module = types.ModuleType(f"baseline_{name}")
        sys.modules[module.__name__] = module
        exec(compile(source, f"<baseline {name}>", "exec"), module.__dict__)  # noqa: S102
        classes[name] = getattr(module, module.__all__[0])
    return classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tensors", type=int, default=60)
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--baseline", help="another optforge checkout to compare exports with")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import lion_pytorch

    AdamW = optimizer_class(seeds.load_seed("adamw"), "AdamW")
    Lion = optimizer_class(seeds.load_seed("lion"), "Lion")
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(args.size, generator=gen) for _ in range(args.tensors)]
    grads = [torch.randn(args.size, generator=gen) for _ in range(args.tensors)]

    contenders = {
        "torch AdamW fused=True": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
        "exported AdamW compile=True": lambda ps: AdamW(ps, lr=1e-3, compile=True),
        "torch AdamW foreach=False": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=False),
        "exported AdamW default": lambda ps: AdamW(ps, lr=1e-3),
        "torch AdamW foreach=True": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "exported AdamW foreach=True": lambda ps: AdamW(ps, lr=1e-3, foreach=True),
        "lion-pytorch Lion": lambda ps: lion_pytorch.Lion(ps, lr=1e-4),
        "exported Lion compile=True": lambda ps: Lion(ps, lr=1e-4, compile=True),
        "hand-written compiled Lion": lambda ps: handwritten_compiled_lion()(ps, lr=1e-4),
    }
    pairs = [("exported AdamW compile=True", "torch AdamW fused=True", 1.1),
             ("exported Lion compile=True", "lion-pytorch Lion", 0.5),
             ("exported AdamW default", "torch AdamW foreach=False", 1.2),
             ("exported AdamW foreach=True", "torch AdamW foreach=True", None),
             ("exported Lion compile=True", "hand-written compiled Lion", None)]
    if args.baseline:
        base = baseline_classes(args.baseline)
        ordered = {}
        for name, make in contenders.items():
            ordered[name] = make
            kw = ({"compile": True} if "compile=True" in name else
                  {"foreach": True} if "foreach=True" in name else {})
            if name.startswith("exported AdamW"):
                ordered["baseline " + name[len("exported "):]] = (
                    lambda ps, kw=kw: base["adamw"](ps, lr=1e-3, **kw))
            elif name.startswith("exported Lion"):
                ordered["baseline " + name[len("exported "):]] = (
                    lambda ps, kw=kw: base["lion"](ps, lr=1e-4, **kw))
        contenders = ordered
        pairs += [(n, "baseline " + n[len("exported "):], None)
                  for n in contenders if n.startswith("exported ")]
    optimizers = {}
    for name, make in contenders.items():
        params = [torch.nn.Parameter(w.clone()) for w in start]
        for p, g in zip(params, grads):
            p.grad = g  # shared, read-only for every contender
        optimizers[name] = make(params)

    print(f"{args.tensors} tensors x {args.size:,} float32 parameters, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, opt in optimizers.items():
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            opt.step()
        print(f"  warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)

    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(args.rounds):
        for name, opt in optimizers.items():  # in the order above: pairs are adjacent
            t0 = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}

    print(f"\nmedian step time over {args.rounds} interleaved rounds:")
    for name, ms in median.items():
        print(f"  {name:34s} {ms:8.2f} ms")
    print("\nratios (same run): ratio of medians | median of per-round ratios")
    for ours, ref, target in pairs:
        ratio = median[ours] / median[ref]
        paired = statistics.median(a / b for a, b in zip(times[ours], times[ref]))
        verdict = "" if target is None else (f"  target <= {target}: "
                                             + ("met" if max(ratio, paired) <= target
                                                else "NOT met"))
        print(f"  {ours} / {ref}: {ratio:.2f} | {paired:.2f}{verdict}")


if __name__ == "__main__":
    main()

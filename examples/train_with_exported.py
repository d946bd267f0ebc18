"""Train a small MLP on scikit-learn's digits with an optimizer that optforge exported.

    optforge export 315 --out my_opt.py
    python examples/train_with_exported.py my_opt.py [--steps 300] [--every 50] [--lr RATE]

With no module, it exports the `lion` seed first. The rate warms up, then decays on a cosine.
"""
import argparse
import math
import runpy
import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits


def export_seed(name: str, directory: str) -> Path:  # through optforge's Python API
    from optforge.dsl.export import export_module

    from optforge import seeds
    info = seeds.seed_info(name)
    path = Path(directory) / f"{name}_opt.py"
    path.write_text(export_module(info.program, provenance=f"seed {name!r}", default_lr=info.lr))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module", nargs="?", help="an exported optimizer module (.py)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=50, help="print the loss every N steps")
    ap.add_argument("--lr", type=float, help="peak rate (default: the module's default lr)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()  # removed at exit
    path = Path(args.module or export_seed("lion", tmp.name))
    module = runpy.run_path(str(path))  # the module's globals
    Optimizer = module[module["__all__"][0]]  # its one optimizer class
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = Optimizer(model.parameters(), **({} if args.lr is None else {"lr": args.lr}))
    print(f"{Optimizer.__name__} from {path}, peak lr {opt.param_groups[0]['lr']:g}")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(  # 5% warm-up, then cosine
        20 * (s + 1) / args.steps, 0.5 * (1 + math.cos(math.pi * s / args.steps))))
    for step in range(args.steps + 1):
        loss = torch.nn.functional.cross_entropy(model(x[:1500]), y[:1500])
        if step % args.every == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.4f}")
        if step < args.steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    accuracy = (model(x[1500:]).argmax(1) == y[1500:]).float().mean().item()
    print(f"accuracy on the {len(y) - 1500} held-out digits: {accuracy:.3f}")


if __name__ == "__main__":
    main()

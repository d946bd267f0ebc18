"""Optimizer-state memory of seeds on a GPT-2-small-like model, counted from the shapes their
state slots are stored at (computed, nothing is trained; not a test).

    python bench/seed_state_memory.py [SEED ...] [--vocab 50257] [--context 1024]
                                      [--width 768] [--layers 12] [--bytes 4]

The model is GPT-2 small's parameter list (Radford et al. 2019; HuggingFace's
GPT2LMHeadModel, the output layer tied to the token embedding), each weight written as
torch.nn.Linear's (out, in): token embedding (vocab, width), position embedding (context,
width); per layer two LayerNorms (width weights and biases each), attention qkv (3 width,
width) + bias, attention output (width, width) + bias, MLP up (4 width, width) + bias, MLP
down (width, 4 width) + bias; a final LayerNorm. 124,439,808 parameters at the defaults.

A slot stores `dsl.slots.stored_shape(kind, shape)` numbers: the parameter's shape for a
full slot, one number per row of the matrix view for `row`, one per column for `col`, one
for `scalar` (a vector of n entries is an n x 1 column). Printed: each seed's state in
numbers, in bytes at --bytes per number (4: float32), and against AdamW's.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optforge.dsl.slots import stored_shape
from optforge.seeds import load_seed

Shape = tuple[int, ...]


def gpt2_small_shapes(vocab: int = 50257, context: int = 1024, width: int = 768,
                      layers: int = 12) -> list[Shape]:
    """The parameter shapes of a GPT-2-like model (see the module doc)."""
    layer: list[Shape] = [
        (width,), (width,),                       # ln_1
        (3 * width, width), (3 * width,),         # attention qkv
        (width, width), (width,),                 # attention output
        (width,), (width,),                       # ln_2
        (4 * width, width), (4 * width,),         # MLP up
        (width, 4 * width), (width,),             # MLP down
    ]
    return [(vocab, width), (context, width)] + layer * layers + [(width,), (width,)]


def state_numbers(seed: str, shapes: list[Shape]) -> int:
    """How many numbers the seed's optimizer state holds for parameters of these shapes."""
    program = load_seed(seed)
    return sum(math.prod(stored_shape(program.slot_shape(slot), shape))
               for shape in shapes for slot in program.state)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", nargs="*", default=["adamw", "adafactor", "came"])
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--bytes", type=int, default=4, help="bytes per number (4: float32)")
    args = parser.parse_args(argv)
    shapes = gpt2_small_shapes(args.vocab, args.context, args.width, args.layers)
    params = sum(math.prod(s) for s in shapes)
    matrices = sum(len(s) >= 2 for s in shapes)
    print(f"model: {params:,} parameters in {len(shapes)} tensors ({matrices} matrices), "
          f"{params * args.bytes / 2**20:,.1f} MiB at {args.bytes} bytes")
    adamw = state_numbers("adamw", shapes)
    print(f"{'seed':<12} {'state numbers':>15} {'bytes':>15} {'MiB':>10} {'/ AdamW':>9}")
    for seed in args.seeds:
        n = state_numbers(seed, shapes)
        print(f"{seed:<12} {n:>15,} {n * args.bytes:>15,} {n * args.bytes / 2**20:>10,.2f} "
              f"{n / adamw:>9.5f}")


if __name__ == "__main__":
    main()

"""How long the command line takes to answer, against Python's own start-up and against
`import torch`, measured in the same run.

    python bench/cli_startup.py [--db URL] [--repeat N]

The listings (`--help`, `campaigns`, `top`, `lineage`) must never import torch (an import
costs about a second on a CPU machine); `show` parses and simplifies a rule and does. Each
figure is the best of N runs of a fresh interpreter (start-up is what a user waits for), as
seconds and as a ratio to `python -c "import torch"`. Without --db it builds a small database
of stored programs first (no training).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def best_of(argv: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, PYTHONPATH=os.getcwd()))
        best = min(best, time.perf_counter() - start)
    return best


def small_database(directory: str) -> tuple[str, int]:
    """A database with a campaign and a few evaluated seeds, written through the Store."""
    from optforge.store import Store

    from optforge import seeds

    url = f"sqlite:///{directory}/bench.db"
    with Store(url) as store:
        camp = store.create_campaign("bench", {"note": "start-up benchmark"}, status="paused")
        program_id = None
        for i, name in enumerate(("adamw", "lion", "sgd_momentum", "adam")):
            record = store.add_program(seeds.load_seed(name))
            program_id = program_id or record.id
            store.add_evaluation(record.id, campaign=camp.id, suite="small", stage=1,
                                 status="ok", score=1.0 - 0.1 * i, key=f"bench/{i}")
    return url, program_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="an existing database (default: a small one built here)")
    parser.add_argument("--program", type=int, help="program id for show/lineage")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        url, program = (args.db, args.program) if args.db else small_database(tmp)
        program = program or 1
        python = best_of([py, "-c", "pass"], args.repeat)
        torch = best_of([py, "-c", "import torch"], args.repeat)
        print(f"python -c pass        {python:6.3f} s")
        print(f"python -c 'import torch' {torch:6.3f} s  (the reference: 1.00x)")
        for command in (["--help"], ["--version"], ["campaigns", "--db", url],
                        ["top", "--db", url],
                        ["lineage", str(program), "--out", f"{tmp}/l.dot", "--db", url],
                        ["show", str(program), "--db", url]):
            seconds = best_of([py, "-m", "optforge", *command], args.repeat)
            label = "optforge " + " ".join(command[:1] if len(command) > 1 else command)
            print(f"{label:<24} {seconds:6.3f} s  {seconds / torch:5.2f}x import torch")


if __name__ == "__main__":
    main()

"""Shared helpers of the store's tests (imported by name: tests/store is on sys.path)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from optforge.store import ProgramData, TaskResultRecord

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "store_worker.py"


def program(i: int, *, complexity: int | None = None, name: str | None = None
            ) -> ProgramData:
    """A synthetic program record; the same `i` gives the same structural hash in every
    process (the store treats hashes as opaque strings)."""
    return ProgramData(
        name=name or f"p{i}",
        source=f"def p{i}(w, g, lr, t):\n    return lr * g\n",
        structural_hash=hashlib.sha256(f"program {i}".encode()).hexdigest(),
        canonical_hash=f"c{i % 7}",
        fingerprint=f"f{i % 5}",
        statements=1 + i % 6,
        complexity=complexity if complexity is not None else 2 + i % 9,
    )


def tasks(score: float, n: int = 3) -> list[TaskResultRecord]:
    return [TaskResultRecord(task=f"task{j}", status="ok", score=score + j / 100,
                             loss=1.0 - score, best_lr=1e-3 * (j + 1), wall_time=0.01,
                             metrics={"losses": [1.0, 0.5, 0.25]})
            for j in range(n)]


def spawn_worker(*args: str, stdin: bool = False) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                               ""))
    return subprocess.Popen([sys.executable, str(WORKER), *args], cwd=str(REPO), env=env,
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1)

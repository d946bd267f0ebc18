"""Store throughput and query latency (a benchmark, not a test: it prints figures).

    python bench/store_throughput.py [--pg URL] [--evals N] [--rows 100000]

1. Committed evaluations per second, each evaluation (with 3 per-task results) in its own
   durable transaction, with 1 and with 4 writer processes, on SQLite (WAL, synchronous=FULL)
   and on PostgreSQL (when a URL is given with --pg or $OPTFORGE_TEST_PG_URL).
2. Query latency on a database of --rows evaluations (default 100,000, spread over 20,000
   programs, two suites, with 3 task results each): top-10 / top-100 programs, Pareto front,
   campaign statistics; median of repeated runs.

PostgreSQL runs happen in a fresh schema of the given database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optforge.store import ProgramData, Store, TaskResultRecord  # noqa: E402
from optforge.store import models as m  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402


def program(i: int) -> ProgramData:
    h = hashlib.sha256(f"bench {i}".encode()).hexdigest()
    return ProgramData(name=f"p{i}", source=f"def p{i}(w, g, lr, t):\n    return lr * g\n",
                       structural_hash=h, canonical_hash=h[:32], fingerprint=h[32:],
                       statements=1 + i % 7, complexity=2 + i % 23)


TASKS = [TaskResultRecord(f"task{j}", "ok", 0.5 + j / 10, loss=0.1, best_lr=1e-3,
                          wall_time=0.2, metrics={"lrs": [1e-4, 1e-3, 1e-2]})
         for j in range(3)]


# ---- fresh databases -----------------------------------------------------------------------

class Fresh:
    """A fresh empty database: a new SQLite file, or a new schema on the PostgreSQL server."""

    def __init__(self, backend: str, pg_url: str | None, tmp: Path):
        self.backend = backend
        self.schema = None
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        else:
            self.schema = "bench_" + uuid.uuid4().hex[:12]
            self.admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
            with self.admin.connect() as c:
                c.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            self.url = make_url(pg_url).update_query_dict(
                {"options": f"-csearch_path={self.schema}"}).render_as_string(
                hide_password=False)

    def drop(self) -> None:
        if self.schema:
            with self.admin.connect() as c:
                c.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            self.admin.dispose()


# ---- 1. commit throughput ------------------------------------------------------------------

def _writer(url: str, w: int, n: int, program_ids: list[int], start, done_q) -> None:
    st = Store(url)
    start.wait()
    t0 = time.perf_counter()
    for i in range(n):
        st.add_evaluation(program_ids[(w * 31 + i) % len(program_ids)], campaign="bench",
                          suite="small", status="ok", score=(i % 100) / 100, tasks=TASKS,
                          wall_time=1.0, key=f"w{w}-{i}")
    done_q.put(time.perf_counter() - t0)
    st.close()


def throughput(url: str, writers: int, n: int) -> tuple[float, int]:
    with Store(url) as st:
        st.create_campaign("bench", {})
        ids = [st.add_program(program(i)).id for i in range(50)]
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    done_q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, n, ids, start, done_q))
             for w in range(writers)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let every process import and open its Store before the start signal
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    for p in procs:
        if p.exitcode != 0:
            raise SystemExit(f"a writer failed (exit code {p.exitcode})")
    with Store(url, create=False) as st:
        stored = st.count_evaluations(campaign="bench")
    assert stored == writers * n, (stored, writers * n)
    return writers * n / elapsed, stored


# ---- 2. query latency on a big database ----------------------------------------------------

def populate(url: str, rows: int, programs: int) -> float:
    """Bulk-load `rows` evaluations (each with 3 task results) in large batches; returns s."""
    from optforge.store.writes import rank_score

    t0 = time.perf_counter()
    st = Store(url)
    camp = st.create_campaign("big", {})
    other = st.create_campaign("other", {})
    now = m.utcnow()
    engine = st._engines.write  # bulk loading bypasses the one-row-per-transaction API
    with engine.begin() as conn:
        for lo in range(0, programs, 5000):
            conn.execute(m.Program.__table__.insert(), [
                dict(name=d.name, source=d.source, structural_hash=d.structural_hash,
                     canonical_hash=d.canonical_hash, fingerprint=d.fingerprint,
                     statements=d.statements, complexity=d.complexity, created_at=now)
                for d in map(program, range(lo, min(lo + 5000, programs)))])
        first = conn.execute(text("SELECT min(id) FROM programs")).scalar_one()
    import random

    rng = random.Random(0)
    batch = 5000
    next_id = 1
    for lo in range(0, rows, batch):
        hi = min(lo + batch, rows)
        evals, results = [], []
        for i in range(lo, hi):
            score = rng.gauss(0.5, 0.25) if i % 97 else float("nan")
            evals.append(dict(id=next_id, program_id=first + rng.randrange(programs),
                              campaign_id=camp.id if i % 5 else other.id,
                              suite="small" if i % 4 else "medium", stage=1 if i % 4 else 2,
                              status="ok" if score == score else "diverged", score=score,
                              rank_score=rank_score(score), best_lr=1e-3, wall_time=1.0,
                              error=None, worker="bench", key=None, created_at=now))
            for t in TASKS:
                results.append(dict(evaluation_id=next_id, task=t.task, status="ok",
                                    score=t.score, loss=t.loss, best_lr=t.best_lr,
                                    wall_time=t.wall_time, metrics=dict(t.metrics)))
            next_id += 1
        with engine.begin() as conn:
            conn.execute(m.Evaluation.__table__.insert(), evals)
            conn.execute(m.TaskResult.__table__.insert(), results)
    if st.backend == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT setval(pg_get_serial_sequence('evaluations', 'id'), "
                              "(SELECT max(id) FROM evaluations))"))
            conn.execute(text("ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    st.close()
    return time.perf_counter() - t0


def latency(fn, repeat: int) -> float:
    fn()  # warm-up (caches, connection)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def queries(url: str, repeat: int) -> list[tuple[str, float]]:
    st = Store(url, create=False)
    n = st.count_evaluations()
    out = [
        ("top 10, one suite", latency(lambda: st.top(10, suite="small"), repeat)),
        ("top 10, campaign + suite", latency(lambda: st.top(10, campaign="big",
                                                            suite="small"), repeat)),
        ("top 100, campaign + suite", latency(lambda: st.top(100, campaign="big",
                                                             suite="small"), repeat)),
        ("Pareto front, campaign + suite", latency(lambda: st.pareto_front(
            campaign="big", suite="small"), max(3, repeat // 4))),
        ("campaign statistics", latency(lambda: st.campaign_stats("big"),
                                        max(3, repeat // 4))),
    ]
    st.close()
    return [(f"{name} [{n:,} evaluations]", ms) for name, ms in out]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default=os.environ.get("OPTFORGE_TEST_PG_URL"),
                    help="PostgreSQL URL (default $OPTFORGE_TEST_PG_URL); omitted: SQLite only")
    ap.add_argument("--evals", type=int, default=300, help="evaluations per writer")
    ap.add_argument("--rows", type=int, default=100_000, help="evaluations in the big db")
    ap.add_argument("--repeat", type=int, default=20, help="runs per latency figure")
    args = ap.parse_args()

    backends = ["sqlite"] + (["postgresql"] if args.pg else [])
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        print(f"machine: {os.cpu_count()} CPUs; {args.evals} evaluations per writer, "
              f"3 task results each, one transaction per evaluation")
        print(f"{'backend':<11} {'writers':>7} {'committed/s':>12} {'rows':>6}")
        for backend in backends:
            for writers in (1, 4):
                db = Fresh(backend, args.pg, tmp)
                try:
                    rate, stored = throughput(db.url, writers, args.evals)
                finally:
                    db.drop()
                print(f"{backend:<11} {writers:>7} {rate:>12.1f} {stored:>6}", flush=True)
        if not args.pg:
            print("postgresql: skipped (no --pg URL and no $OPTFORGE_TEST_PG_URL)")

        print(f"\nquery latency, median of {args.repeat} runs (ms)")
        for backend in backends:
            db = Fresh(backend, args.pg, tmp)
            try:
                load = populate(db.url, args.rows, programs=args.rows // 5)
                print(f"{backend}: bulk-loaded {args.rows:,} evaluations in {load:.1f} s",
                      flush=True)
                for name, ms in queries(db.url, args.repeat):
                    print(f"  {backend:<10} {name:<58} {ms:8.2f}", flush=True)
            finally:
                db.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

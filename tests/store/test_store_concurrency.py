"""Four processes write evaluations at once while a fifth queries: no "database is locked"
reaches anyone, no row is lost or doubled, shared programs are inserted once. The five also
open the database while it does not exist yet, so its schema is created under contention."""

from __future__ import annotations

from optforge.store import Store
from storetest_helpers import spawn_worker

WRITERS, PER_WRITER, SHARED = 4, 30, 20


def test_four_writers_one_reader(db_url: str):
    writers = [spawn_worker("writer", db_url, "busy", str(w), str(PER_WRITER), str(SHARED),
                            stdin=True) for w in range(WRITERS)]
    reader = spawn_worker("reader", db_url, "busy", stdin=True)
    procs = writers + [reader]
    try:
        for p in procs:  # each has opened (and maybe created) the database
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        with Store(db_url, create=False) as st:
            st.create_campaign("busy", {})
        for p in procs:  # start together
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for w in writers:
            out, err = w.communicate()
            results.append((w.returncode, out, err))
        r_out, r_err = reader.communicate(input="")  # closing its stdin stops the reader
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for code, out, err in results:
        assert "locked" not in err.lower()
        assert code == 0 and out.strip() == "done", err
    assert "locked" not in r_err.lower()
    assert reader.returncode == 0, r_err
    queries = int(r_out.split()[1])
    assert queries >= 1

    with Store(db_url, create=False) as st:
        evals = st.evaluations(campaign="busy")
        keys = [e.key for e in evals]
        assert len(keys) == WRITERS * PER_WRITER == len(set(keys))
        assert set(keys) == {f"w{w}-{i}" for w in range(WRITERS) for i in range(PER_WRITER)}
        assert all(len(e.tasks) == 3 for e in evals)
        assert st.count_programs() == SHARED
        stats = st.campaign_stats("busy")
        assert stats.evaluations == WRITERS * PER_WRITER
        # Each (child, parent) pair was linked by several writers: still one edge per pair.
        assert stats.lineage_edges == len({((w * 7 + i) % SHARED, (w * 7 + i + 1) % SHARED)
                                           for w in range(WRITERS)
                                           for i in range(PER_WRITER)})

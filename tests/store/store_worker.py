"""Subprocess workers for the store's crash and concurrency tests (run as a script).

    store_worker.py crash-writer URL CAMPAIGN        resume from the checkpoint, then write
                                                     evaluations until killed, printing
                                                     "committed I EVAL_ID" after each commit
    store_worker.py writer URL CAMPAIGN W N SHARED   print "ready", wait for "go" on stdin,
                                                     write N evaluations of programs drawn
                                                     from SHARED shared ones, print "done"
    store_worker.py reader URL CAMPAIGN              print "ready", wait for "go", query in a
                                                     loop until stdin closes, print counts

Any exception makes the process exit non-zero with its traceback on stderr.
"""

from __future__ import annotations

import sys
import threading

from optforge.store import Store
from storetest_helpers import program, tasks


def crash_writer(url: str, campaign: str) -> None:
    st = Store(url)
    ckpt = st.load_checkpoint(campaign)
    done = ckpt.counters["done"] if ckpt else 0
    i = done
    while True:
        prog = st.add_program(program(i % 40))
        if i % 40:
            st.add_lineage(prog.id, st.add_program(program((i - 1) % 40)).id, "insert",
                           campaign=campaign)

        def step(tx, i=i, prog=prog):
            ev = tx.add_evaluation(prog.id, campaign=campaign, suite="tiny", status="ok",
                                   score=i / 1000, tasks=tasks(i / 1000), key=f"eval-{i}",
                                   wall_time=0.5)
            tx.save_checkpoint(campaign, population=[prog.id], rng_state={"step": i},
                               counters={"done": i + 1})
            return ev
        ev = st.run_in_transaction(step)
        print(f"committed {i} {ev.id}", flush=True)
        i += 1


def wait_for_go() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline()
    assert line.strip() == "go", line


def writer(url: str, campaign: str, w: int, n: int, shared: int) -> None:
    st = Store(url)
    wait_for_go()
    for i in range(n):
        prog = st.add_program(program((w * 7 + i) % shared))
        parent = st.add_program(program((w * 7 + i + 1) % shared))
        st.add_lineage(prog.id, parent.id, "change_op", campaign=campaign)
        st.add_evaluation(prog.id, campaign=campaign, suite="tiny", status="ok",
                          score=(w * n + i) / (4 * n), tasks=tasks(i / n),
                          key=f"w{w}-{i}", worker=f"writer{w}")
    print("done", flush=True)


def reader(url: str, campaign: str) -> None:
    st = Store(url)
    stop = threading.Event()
    wait_for_go()

    def watch_stdin() -> None:
        sys.stdin.readline()  # EOF when the test closes stdin
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    queries, last = 0, 0
    while not stop.is_set():
        n = st.count_evaluations(campaign=campaign)
        assert n >= last, f"evaluation count went down: {last} -> {n}"
        last = n
        st.top(10, campaign=campaign, suite="tiny")
        stats = st.campaign_stats(campaign)
        assert stats.evaluations >= n
        for ev in st.evaluations(campaign=campaign)[-5:]:
            assert len(ev.tasks) == 3, ev  # never half an evaluation
        queries += 1
    print(f"queries {queries} last {last}", flush=True)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "crash-writer":
        crash_writer(args[0], args[1])
    elif mode == "writer":
        writer(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    elif mode == "reader":
        reader(args[0], args[1])
    else:
        sys.exit(f"unknown mode {mode}")

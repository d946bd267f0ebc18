"""A pool worker ends when the process that started it is SIGKILLed."""

import os
import signal
import subprocess
import sys
import time

import pytest

SCRIPT = """
import time
from joblib.externals import loky
from optforge.evaluators.jobs import init_worker
ex = loky.ProcessPoolExecutor(max_workers=1, initializer=init_worker, initargs=("cpu", 1))
print(ex.submit(__import__("os").getpid).result(), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has ended; it waits for its reaper
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_exits_when_its_parent_is_killed():
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)  # loky's tracker warns
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    for _ in range(300):  # the watchdog polls once a second
        if not _alive(worker):
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"worker {worker} outlived its parent")

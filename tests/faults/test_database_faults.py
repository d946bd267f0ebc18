"""The database misbehaves under a running campaign: the disk fills up, another process
locks it. The campaign either waits or stops with a one-line error; what was committed
stays consistent, and a resume reproduces the undisturbed run exactly."""

from __future__ import annotations

import errno
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from optforge.store import DatabaseBusy, Store

from .conftest import (
    assert_nothing_doubled,
    history,
    optforge,
    resume_serially,
    start_run,
    wait_for_evaluations,
)


def _fill(directory: Path) -> Path:
    """Fill the filesystem under `directory` to the last byte."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while chunk:
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EFBIG):
                    raise
                chunk = chunk[:len(chunk) // 2]
    return filler


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted for the test (root, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the file-size-limit "
                    "variant covers a full disk")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _assert_consistent_prefix(db_path: Path, db: str, name: str, reference) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Store(db, create=False) as store:
        committed = history(store, name)
        # failed if the run could still record that, else its dead lease says interrupted
        assert store.get_campaign(name).status in ("failed", "interrupted")
        assert_nothing_doubled(store, name)
    assert committed == reference[:len(committed)] and len(committed) < len(reference)


def _assert_one_line_database_error(proc: subprocess.Popen, reason: str) -> None:
    _, err = proc.communicate()
    assert proc.returncode == 1, err
    # the run's one line of news (its name and database), then the error in one line
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("optforge run: error: the database failed: "), err
    assert reason in last and "(resume with: optforge resume 1 --db " in last, err


def test_a_full_disk_stops_the_campaign_in_one_line_and_it_resumes_exactly(
        small_disk, reference):
    db_path = small_disk / "full.db"
    db = f"sqlite:///{db_path}"
    proc = start_run(db, "full", small_disk)
    wait_for_evaluations(proc, db, 3)
    filler = _fill(small_disk)
    _assert_one_line_database_error(proc, "database or disk is full")
    filler.unlink()
    _assert_consistent_prefix(db_path, db, "full", reference)
    assert resume_serially(db, "full") == reference


def test_a_file_size_limit_stops_the_campaign_in_one_line_and_it_resumes_exactly(
        tmp_path, reference):
    """The same fault where no filesystem can be mounted: the kernel refuses to grow any
    file of the campaign process past a limit set once its database exists."""
    db_path = tmp_path / "limited.db"
    db = f"sqlite:///{db_path}"
    Store(db).close()  # the schema, before the limit
    limit = max(p.stat().st_size for p in tmp_path.glob("limited.db*")) + 96 * 1024

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    proc = start_run(db, "limited", tmp_path, preexec_fn=limit_file_size)
    _assert_one_line_database_error(proc, "disk I/O error")  # EFBIG, as SQLite reports it
    _assert_consistent_prefix(db_path, db, "limited", reference)
    assert resume_serially(db, "limited") == reference


def _lock(db_path: Path) -> subprocess.Popen:
    """Another process that holds SQLite's write lock until a line arrives on its stdin."""
    code = ("import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "c.execute('COMMIT')\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(db_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_database_makes_the_campaign_wait_and_readers_go_on(tmp_path, reference):
    db_path = tmp_path / "locked.db"
    db = f"sqlite:///{db_path}"
    proc = start_run(db, "locked", tmp_path)
    wait_for_evaluations(proc, db, 3)
    locker = _lock(db_path)
    try:
        listing = optforge("campaigns", "--db", db)
        out, err = listing.communicate()
        assert listing.returncode == 0 and "locked" in out, err
        # a writer that will not wait as long as the lock is held says so in one line
        with Store(db, busy_timeout=0.1, lock_wait=0.5) as impatient:
            with pytest.raises(DatabaseBusy, match="stayed locked by another writer"):
                impatient.create_campaign("impatient")
    finally:
        locker.communicate("release\n")
    assert locker.returncode == 0
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    with Store(db, create=False) as store:
        assert store.get_campaign("locked").status == "finished"
        assert_nothing_doubled(store, "locked")
        assert history(store, "locked") == reference
        assert [c.name for c in store.campaigns()] == ["locked"]

"""SQLite's locking as a user meets it: a writer waits for another writer instead of failing
with "database is locked", and only an absurdly long lock becomes a clear error."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from optforge.store import DatabaseBusy, Store
from storetest_helpers import program


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_writer_waits_out_another_writer(tmp_path: Path):
    path = tmp_path / "db.sqlite"
    with Store(f"sqlite:///{path}", busy_timeout=0.05, lock_wait=120) as st:
        st.add_program(program(0))
        other = _hold_write_lock(path)
        # Released by another thread a little later; each BEGIN IMMEDIATE attempt times out
        # after 50 ms in the meantime and is retried, never surfacing "database is locked".
        release = threading.Timer(0.5, other.rollback)
        release.start()
        try:
            rec = st.add_program(program(1))
        finally:
            release.join()
            other.close()
        assert st.get_program(rec.id) == rec


def test_reader_is_not_blocked_by_a_writer(tmp_path: Path):
    path = tmp_path / "db.sqlite"
    with Store(f"sqlite:///{path}") as st:
        st.add_program(program(0))
        other = _hold_write_lock(path)
        other.execute("INSERT INTO campaigns (name, status, config, created_at, updated_at) "
                      "VALUES ('uncommitted', 'running', '{}', '2025-01-01', '2025-01-01')")
        try:
            assert st.count_programs() == 1  # WAL: readers see the last commit, no wait
            assert st.campaigns() == []
        finally:
            other.rollback()
            other.close()


def test_a_lock_held_for_too_long_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "db.sqlite"
    with Store(f"sqlite:///{path}", busy_timeout=0.02, lock_wait=0.2) as st:
        other = _hold_write_lock(path)
        try:
            with pytest.raises(DatabaseBusy, match="locked by another writer for more than"):
                st.add_program(program(1))
        finally:
            other.rollback()
            other.close()
        assert st.count_programs() == 0
        st.add_program(program(1))  # and the store works again afterwards
        assert st.count_programs() == 1


def test_in_memory_database(tmp_path: Path):
    with Store("sqlite://") as st:
        p = st.add_program(program(3))
        assert st.get_program(p.id) == p
    assert list(tmp_path.iterdir()) == []

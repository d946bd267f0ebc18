"""Connecting: URL resolution, engines, SQLite's settings, and which errors are transient.

SQLite pitfalls this module exists for (Optuna hit each of them):

* Python's `sqlite3` opens transactions lazily with a *deferred* ``BEGIN``: a transaction that
  reads and then writes must upgrade its lock, and when two do so at once SQLite answers
  "database is locked" at once, without waiting for the busy timeout (the deadlock cannot be
  waited out). Writers here start with ``BEGIN IMMEDIATE``, which takes the write lock first
  and does wait; readers keep a deferred ``BEGIN`` so that, in WAL mode, they never block or
  get blocked by a writer. The driver's own transaction handling is switched off so that
  these BEGINs are the only ones.
* The busy timeout is per attempt; a writer that still cannot get the lock retries the
  ``BEGIN IMMEDIATE`` until `lock_wait` seconds have passed, and then says so in one line.
* WAL mode (readers and one writer at once), ``synchronous=FULL`` (a committed evaluation
  survives a power cut, not only a killed process) and foreign keys are per-connection
  settings, applied on every new connection.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from .errors import ConnectionFailed, DatabaseBusy

DEFAULT_URL = "sqlite:///optforge.db"
ENV_VAR = "OPTFORGE_DB"

T = TypeVar("T")


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else `$OPTFORGE_DB`, else ``sqlite:///optforge.db``.
    A plain path (no ``://``) is taken as an SQLite file."""
    url = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    if "://" not in url:
        url = "sqlite:///" + url
    return url


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise ConnectionFailed(f"not a database URL: {url!r} "
                               "(expected e.g. sqlite:///optforge.db or "
                               "postgresql+psycopg://user@host/db)") from None


def display_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file an SQLite URL names, or None for an in-memory database."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    if database.startswith("file:"):  # URI form: file:path?mode=...
        database = database[5:].split("?", 1)[0]
    return Path(database)


@dataclass(frozen=True)
class Engines:
    """Writers and readers use separate engines on SQLite (BEGIN IMMEDIATE vs deferred BEGIN);
    on a server both are one engine."""

    write: Engine
    read: Engine
    url: URL

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    def dispose(self) -> None:
        self.write.dispose()
        if self.read is not self.write:
            self.read.dispose()


def create_engines(url: URL, *, busy_timeout: float = 5.0, lock_wait: float = 600.0,
                   echo: bool = False) -> Engines:
    try:
        if url.get_backend_name() == "sqlite":
            memory = sqlite_path(url) is None
            write = _sqlite_engine(url, immediate=True, busy_timeout=busy_timeout,
                                   lock_wait=lock_wait, echo=echo, memory=memory)
            # An in-memory database lives in its one connection: readers must share it.
            read = write if memory else _sqlite_engine(
                url, immediate=False, busy_timeout=busy_timeout, lock_wait=lock_wait,
                echo=echo, memory=False)
            return Engines(write, read, url)
        engine = create_engine(url, echo=echo, pool_pre_ping=True)
        # Readers see one snapshot for all the queries of a call (as SQLite's WAL readers
        # do), so a listing never mixes rows from before and after a concurrent commit.
        return Engines(engine, engine.execution_options(isolation_level="REPEATABLE READ"),
                       url)
    except ArgumentError as e:
        raise ConnectionFailed(f"cannot use {display_url(url)}: {e}") from None
    except ModuleNotFoundError as e:  # a driver that is not installed
        hint = " (pip install 'optforge[postgres]')" if url.get_backend_name() == \
            "postgresql" else ""
        raise ConnectionFailed(f"cannot use {display_url(url)}: the database driver "
                               f"{e.name!r} is not installed{hint}") from None
    except Exception as e:  # NoSuchModuleError for an unknown dialect, and the like
        raise ConnectionFailed(f"cannot use {display_url(url)}: "
                               f"{_one_line(str(e))}") from None


def _sqlite_engine(url: URL, *, immediate: bool, busy_timeout: float, lock_wait: float,
                   echo: bool, memory: bool) -> Engine:
    from sqlalchemy.pool import StaticPool

    kwargs: dict = {"echo": echo}
    connect_args = {"timeout": busy_timeout, "check_same_thread": False}
    if memory:
        kwargs["poolclass"] = StaticPool
    # A file database keeps SQLAlchemy's default pool: closing the last connection to a
    # WAL database checkpoints and deletes the WAL file, which would cost two extra fsyncs
    # per transaction. (A pool must not cross a fork: open one Store per process.)
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see module doc)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            if immediate and not memory:
                # WAL is a property of the file, set by writers; a reader leaves the file
                # as it found it (it may not even be ours).
                _retry_locked(lambda: cur.execute("PRAGMA journal_mode = WAL"), lock_wait)
            cur.execute("PRAGMA synchronous = FULL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        _retry_locked(lambda: conn.exec_driver_sql(begin), lock_wait)

    return engine


def _retry_locked(fn: Callable[[], object], lock_wait: float) -> None:
    """Run `fn`, retrying while SQLite reports the database locked, up to `lock_wait` s."""
    deadline = time.monotonic() + lock_wait
    delay = 0.01
    while True:
        try:
            fn()
            return
        except (sqlite3.OperationalError, OperationalError) as e:
            if not _is_sqlite_busy(e):
                raise
            if time.monotonic() > deadline:
                raise DatabaseBusy(f"the database stayed locked by another writer for more "
                                   f"than {lock_wait:g} s") from None
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)


def _is_sqlite_busy(e: BaseException) -> bool:
    orig = getattr(e, "orig", e)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    text = str(orig).lower()
    return "locked" in text or "busy" in text


# PostgreSQL SQLSTATEs after which the whole transaction may simply be run again.
_PG_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def is_transient(e: BaseException) -> bool:
    """Whether running the failed transaction again may succeed."""
    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    if _is_sqlite_busy(e):
        return True
    orig = getattr(e, "orig", None)
    return getattr(orig, "sqlstate", None) in _PG_RETRYABLE or \
        getattr(orig, "pgcode", None) in _PG_RETRYABLE


def with_retries(fn: Callable[[], T], *, attempts: int = 8) -> T:
    """Run the transaction function `fn` (which opens and closes its own transaction),
    again after a short randomised back-off if it fails transiently."""
    delay = 0.02
    for attempt in range(attempts):
        try:
            return fn()
        except DBAPIError as e:
            if attempt == attempts - 1 or not is_transient(e):
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def describe_db_error(e: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's boilerplate."""
    orig = getattr(e, "orig", None) or e
    return _one_line(str(orig))


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else text.strip()

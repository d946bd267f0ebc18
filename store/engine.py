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

Files that are not what they should be are refused before anything is written to them:

* a non-empty file whose first 16 bytes are not SQLite's magic ``SQLite format 3\\0`` is
  not opened at all (`check_sqlite_file`);
* a writer's first connection runs ``PRAGMA quick_check`` (every page read once: about
  1-2 ms per MB) before it sets WAL mode, so a damaged file ("database disk image is
  malformed") is refused with its header unchanged. Readers skip the check (listings must
  stay fast on a large database); an error met while reading is reported in one line;
* a file this process cannot write (a read-only file, a read-only directory, where SQLite
  could not create the ``-wal`` and ``-shm`` files beside it, a read-only file system) gets
  a write engine that refuses to connect (`ReadOnlyDatabase`, "cannot write to ...").
  Its readers open it without writing anything: with ``immutable=1`` when no ``-wal``
  file exists (then no process has it open for writing, and the main file is the whole
  database), else with ``mode=ro``, which uses the ``-wal`` and ``-shm`` files that are
  there. A read-only WAL database with a ``-wal`` but no ``-shm`` file cannot be read.
  Writability is what `os.access` says, so root, who may write any file, writes.

`store_error` turns what the driver raised into a one-line `StoreError` naming the
database; the command line prints those.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from .errors import (
    ConnectionFailed,
    DatabaseBusy,
    DatabaseDamaged,
    DatabaseFailed,
    NotAnOptforgeDatabase,
    ReadOnlyDatabase,
    StoreError,
)

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
    """`url` parsed; anything malformed (no scheme, a port that is not a number from 1 to
    65535, bad brackets around an IPv6 host, ...) is a one-line `ConnectionFailed`."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as e:
        # SQLAlchemy parses the port with int(): "invalid literal for int() ..." says
        # nothing to a user, so name the part that is wrong.
        detail = "" if isinstance(e, ArgumentError) else f": {_url_problem(url, e)}"
        raise ConnectionFailed(f"not a database URL: {url!r}{detail} "
                               "(expected e.g. sqlite:///optforge.db or "
                               "postgresql+psycopg://user@host:5432/db)") from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ConnectionFailed(f"not a database URL: {url!r}: port {parsed.port} is not "
                               "between 1 and 65535")
    return parsed


def _url_problem(url: str, e: Exception) -> str:
    port = re.search(r"invalid literal for int\(\) with base 10: (.*)$", str(e))
    if port:  # (an IPv6 host without its closing bracket ends up here too)
        return f"the port {port.group(1)} is not a number"
    return _one_line(str(e))


def describe_location(url: str | None) -> str:
    """How messages name the database `url` (None: the default), never raising."""
    try:
        return display_url(parse_url(resolve_url(url)))
    except StoreError:
        return str(url)


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


SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database


def check_sqlite_file(path: Path) -> None:
    """Refuse a non-empty file that is not an SQLite database before SQLite opens it. (An
    empty file is an empty database, as SQLite has it.)"""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConnectionFailed(f"cannot read {path}: {e.strerror or e}") from None
    if head and head != SQLITE_MAGIC:
        raise NotAnOptforgeDatabase(f"{path} is not an optforge database: it is not an "
                                    "SQLite file (it does not begin with 'SQLite format 3')")


def unwritable_reason(path: Path) -> str | None:
    """Why this process cannot write the SQLite database `path` (None: it can). SQLite
    writes beside the file too (the ``-wal`` and ``-shm`` files, or a ``-journal``), so the
    directory must be writable as well. Decided by `os.access`: as the kernel would for
    this user (root may write a file whatever its mode; nobody writes to a read-only file
    system)."""
    directory = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(directory, os.W_OK | os.X_OK):
        if not path.exists():
            return f"directory {directory} is not writable"
        return (f"its directory {directory} is read-only (SQLite writes its -wal and -shm "
                "files beside the database)")
    return None


def create_engines(url: URL, *, busy_timeout: float = 5.0, lock_wait: float = 600.0,
                   echo: bool = False) -> Engines:
    try:
        if url.get_backend_name() == "sqlite":
            path = sqlite_path(url)
            if path is None:
                # An in-memory database lives in its one connection: readers must share it.
                write = _sqlite_engine(url, immediate=True, busy_timeout=busy_timeout,
                                       lock_wait=lock_wait, echo=echo, memory=True)
                return Engines(write, write, url)
            check_sqlite_file(path)
            reason = unwritable_reason(path)
            if url.query.get("mode") == "ro" or url.query.get("immutable") == "1":
                # Read it our way: SQLite's own mode=ro leaves -wal and -shm files behind.
                reason = "the URL opens it read-only"
            if reason is not None and not path.exists():
                raise ReadOnlyDatabase(f"cannot create {path}: {reason}", reason)
            write = _sqlite_engine(url, immediate=True, busy_timeout=busy_timeout,
                                   lock_wait=lock_wait, echo=echo, memory=False,
                                   read_only=reason)
            read = _sqlite_engine(url, immediate=False, busy_timeout=busy_timeout,
                                  lock_wait=lock_wait, echo=echo, memory=False,
                                  read_only=reason)
            return Engines(write, read, url)
        engine = create_engine(url, echo=echo, pool_pre_ping=True)
        # Readers see one snapshot for all the queries of a call (as SQLite's WAL readers
        # do), so a listing never mixes rows from before and after a concurrent commit.
        return Engines(engine, engine.execution_options(isolation_level="REPEATABLE READ"),
                       url)
    except StoreError:
        raise
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
                   echo: bool, memory: bool, read_only: str | None = None) -> Engine:
    """`read_only`: why this process cannot write the file (None: it can). Then a writer
    refuses to connect and a reader opens the file without writing (module doc)."""
    from sqlalchemy.pool import StaticPool

    kwargs: dict = {"echo": echo}
    connect_args = {"timeout": busy_timeout, "check_same_thread": False}
    if memory:
        kwargs["poolclass"] = StaticPool
    path = sqlite_path(url)
    if read_only is not None and path is not None:
        if immediate:
            def refuse() -> sqlite3.Connection:
                raise ReadOnlyDatabase(f"cannot write to {display_url(url)}: {read_only}",
                                       read_only)
            kwargs["creator"] = refuse
        else:
            uri = _read_only_uri(path)
            kwargs["creator"] = lambda: sqlite3.connect(uri, uri=True, **connect_args)
    # A file database keeps SQLAlchemy's default pool: closing the last connection to a
    # WAL database checkpoints and deletes the WAL file, which would cost two extra fsyncs
    # per transaction. (A pool must not cross a fork: open one Store per process.)
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
    verified: list[bool] = []  # a writer checks the file on its first connection

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see module doc)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            if immediate and not memory:
                if not verified:
                    _verify_pages(cur, url, lock_wait)
                    verified.append(True)
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


def _read_only_uri(path: Path) -> str:
    """The URI that reads `path` writing nothing at all: ``immutable=1`` (no locks, no
    ``-shm``) unless a ``-wal`` file exists, whose committed pages are part of the
    database; then ``mode=ro``, which reads through the existing ``-wal`` and ``-shm``."""
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    return f"file:{quote(str(path.absolute()))}?{mode}"


def _verify_pages(cur: sqlite3.Cursor, url: URL, lock_wait: float) -> None:
    """``PRAGMA quick_check`` before the first write: a damaged file is refused untouched
    (without this, setting WAL mode rewrote its header, and a campaign row was written
    before an evaluation met the damaged page)."""
    rows: list = []

    def check() -> None:
        rows[:] = cur.execute("PRAGMA quick_check(1)").fetchall()
    try:
        _retry_locked(check, lock_wait)
    except sqlite3.DatabaseError as e:
        raise store_error(e, display_url(url)) from None
    result = str(rows[0][0]) if rows else "ok"
    if result != "ok":
        # "*** in database main ***\nPage 16: btreeInitPage() returns error code 11"
        found = [ln.strip() for ln in result.splitlines()
                 if ln.strip() and not ln.startswith("***")]
        raise DatabaseDamaged(f"{display_url(url)} is damaged and was left as it is "
                              f"(PRAGMA quick_check: {'; '.join(found) or result})")


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


def store_error(e: BaseException, where: str) -> StoreError:
    """The one-line `StoreError` for what the driver raised about the database `where`."""
    if isinstance(e, StoreError):
        return e
    reason = describe_db_error(e)
    text = reason.lower()
    if "malformed" in text:
        return DatabaseDamaged(f"{where} is damaged and was left as it is ({reason})")
    if "not a database" in text:
        return NotAnOptforgeDatabase(f"{where} is not an optforge database: {reason}")
    if "readonly" in text or "read-only" in text:
        return ReadOnlyDatabase(f"cannot write to {where}: {reason}")
    if "unable to open" in text:
        return ConnectionFailed(f"cannot open {where}: {reason}")
    return DatabaseFailed(f"{where}: {reason}")


def describe_db_error(e: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's boilerplate."""
    orig = getattr(e, "orig", None) or e
    return _one_line(str(orig))


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else text.strip()

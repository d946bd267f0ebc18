"""Creating, checking and upgrading the schema with Alembic.

The scripts live in `store/migrations` (shipped as package data), so no `alembic.ini` is
needed: `alembic_config()` builds the configuration in code, and `optforge`'s own database
code and the `alembic` command line (``alembic -c <ini pointing here>``) run the same
migrations.

Opening a database (`ensure_schema`):

* no optforge tables: create them by upgrading to the head revision (if allowed),
* at an older known revision: upgrade (if allowed),
* at an unknown revision: refuse clearly, since it was written by a newer optforge and this
  one cannot know what its rows mean,
* tables but no Alembic version: not an optforge database; refuse,
* older, but this process cannot write the file: refuse, saying why (`ReadOnlyDatabase`).

Two processes that open a fresh database at once must not both create the tables: on SQLite
the check-and-migrate runs inside ``BEGIN IMMEDIATE`` (the write engine), on PostgreSQL under
a transaction-scoped advisory lock, so the second process waits and then finds the head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from .engine import Engines, display_url
from .errors import (
    NotAnOptforgeDatabase,
    ReadOnlyDatabase,
    SchemaOutdated,
    SchemaTooNew,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
# Arbitrary 64-bit key for pg_advisory_xact_lock: "optforge" in ASCII.
_PG_LOCK_KEY = 0x6F7074666F726765


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "store/migrations has no revisions"
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def ensure_schema(engines: Engines, *, create: bool, upgrade: bool) -> str:
    """Make sure the database holds optforge's schema at the head revision; returns it."""
    where = display_url(engines.url)
    script = script_directory()
    head = head_revision()
    known = {rev.revision for rev in script.walk_revisions()}

    # Fast path, without taking the write lock: already at head.
    with engines.read.connect() as conn:
        rev, has_tables = current_revision(conn), _has_tables(conn)
        conn.rollback()
    if rev == head:
        return head
    _refuse_unknown(rev, known, head, where)
    if rev is None and has_tables:
        raise NotAnOptforgeDatabase(f"{where} holds tables but no optforge schema version; "
                                    "it is not an optforge database")
    if rev is None and not create:
        raise NotAnOptforgeDatabase(f"{where} is not an optforge database (it is empty)")
    if rev is not None and not upgrade:
        raise SchemaOutdated(f"{where} has schema revision {rev}, older than this "
                             f"optforge's {head}; open it for writing to upgrade it")

    try:
        with engines.write.begin() as conn:  # BEGIN IMMEDIATE on SQLite
            if engines.backend == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            rev = current_revision(conn)  # again: another process may have migrated
            _refuse_unknown(rev, known, head, where)
            if rev != head:
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    except ReadOnlyDatabase as e:
        if rev is None:
            raise  # "cannot write to ...": tables cannot be created in it
        raise ReadOnlyDatabase(f"{where} has schema revision {rev}, older than this "
                               f"optforge's {head}, and cannot be upgraded: "
                               f"{e.reason or e}", e.reason) from None
    return head


def _refuse_unknown(rev: str | None, known: set[str], head: str, where: str) -> None:
    if rev is not None and rev not in known:
        raise SchemaTooNew(f"{where} has schema revision {rev!r}, which this optforge does "
                           f"not know (its newest is {head!r}): it was written by a newer "
                           "optforge; upgrade optforge to read it")


def _has_tables(conn: Connection) -> bool:
    """Whether the database holds tables other than Alembic's (which a downgrade to the
    base revision leaves behind, empty)."""
    return bool(set(inspect(conn).get_table_names()) - {VERSION_TABLE})

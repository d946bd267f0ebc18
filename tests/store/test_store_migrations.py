"""Schema management: Alembic migrations, foreign and newer databases, and opening for
reading without creating anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from optforge.store import (
    DatabaseNotFound,
    NotAnOptforgeDatabase,
    SchemaTooNew,
    Store,
)
from optforge.store.models import Base
from optforge.store.schema import alembic_config, head_revision
from sqlalchemy import create_engine, inspect, text
from storetest_helpers import program


def test_migrations_build_exactly_the_models(store: Store, db_url: str):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
        assert ctx.get_current_revision() == head_revision() == store.schema_revision
    engine.dispose()


def test_downgrade_to_base_and_reopen(store: Store, db_url: str):
    """The downgrade drops everything; opening again migrates back up to the head."""
    store.add_program(program(1))
    store.close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    with Store(db_url) as again:
        assert again.count_programs() == 0
        again.add_program(program(1))


def test_newer_unknown_schema_is_refused_clearly(store: Store, db_url: str):
    store.close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed2030'"))
    engine.dispose()
    for create in (True, False):
        with pytest.raises(SchemaTooNew) as info:
            Store(db_url, create=create)
        message = str(info.value)
        assert "'f00dfeed2030'" in message and "newer optforge" in message
        assert "\n" not in message


def test_reading_never_creates_a_sqlite_file(tmp_path: Path):
    path = tmp_path / "absent.db"
    with pytest.raises(DatabaseNotFound, match="no optforge database at"):
        Store(f"sqlite:///{path}", create=False)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_reading_an_empty_database_creates_no_tables(db_url: str):
    if db_url.startswith("sqlite:///"):
        Path(db_url[len("sqlite:///"):]).touch()  # an empty file is an empty SQLite db
    with pytest.raises(NotAnOptforgeDatabase, match="is not an optforge database"):
        Store(db_url, create=False)
    if db_url.startswith("sqlite:///"):
        assert Path(db_url[len("sqlite:///"):]).stat().st_size == 0  # left untouched
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    engine.dispose()


def test_foreign_sqlite_databases_are_refused(tmp_path: Path):
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    with pytest.raises(NotAnOptforgeDatabase, match="not an optforge database"):
        Store(f"sqlite:///{other}")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(NotAnOptforgeDatabase, match="not an optforge database"):
        Store(f"sqlite:///{garbage}", create=False)
    with pytest.raises(NotAnOptforgeDatabase, match="is a directory"):
        Store(f"sqlite:///{tmp_path}")
def test_bad_urls_are_one_line_errors(tmp_path: Path):
    from optforge.store import ConnectionFailed

    for url in ("nosuchdialect://x/y", "sqlite:///" + str(tmp_path / "no" / "dir" / "x.db"),
                "postgresql+psycopg://nobody@127.0.0.1:1/none"):
        with pytest.raises(ConnectionFailed) as info:
            Store(url)
        assert "\n" not in str(info.value)


def test_sqlite_settings(sqlite_url: str):
    with Store(sqlite_url) as st:
        with st._engines.write.connect() as conn:
            pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                       for name in ("journal_mode", "foreign_keys", "busy_timeout",
                                    "synchronous")}
            conn.rollback()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000,
                       "synchronous": 2}

"""Fixtures for the store's tests: every contract test runs against SQLite and against a
real PostgreSQL server.

The PostgreSQL URL comes from `$OPTFORGE_TEST_PG_URL` (`.ci/postgres.sh` starts a throwaway
server and prints it). Without it the PostgreSQL half skips locally, and fails in CI
(`CI=true`), where it is required. Each test gets its own PostgreSQL schema (selected with
``search_path`` in the URL), dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from optforge.store import Store
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ENV = "OPTFORGE_TEST_PG_URL"
BACKENDS = ["sqlite", "postgresql"]


def pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{PG_ENV} is not set: the PostgreSQL contract tests are required in "
                        "CI (.ci/run must start a server with .ci/postgres.sh)")
        pytest.skip(f"{PG_ENV} not set (run `eval \"$(bash .ci/postgres.sh)\"`)")
    return url


class PgSchema:
    """A fresh schema on the test server, and a URL whose connections use it."""

    def __init__(self, base_url: str):
        self.name = "t_" + uuid.uuid4().hex[:16]
        self.admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={self.name}"})
        self.url = url.render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        self.admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, tmp_path: Path):
    """A URL of an empty database on `backend`."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'optforge.db'}"
        return
    schema = PgSchema(pg_base_url())
    try:
        yield schema.url
    finally:
        schema.drop()


@pytest.fixture
def store(db_url: str):
    st = Store(db_url)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optforge.db'}"

"""Alembic environment for optforge's store.

`store.schema` runs migrations on a connection it already holds (inside the transaction
that also holds the migration lock), passed as ``config.attributes["connection"]``. Run
from the `alembic` command line instead, the URL comes from ``sqlalchemy.url`` in the ini
file or from ``$OPTFORGE_DB``.
"""

from __future__ import annotations

from alembic import context
from optforge.store.engine import resolve_url
from optforge.store.models import Base
from sqlalchemy import create_engine

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url") or resolve_url(),
                      target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or resolve_url())
    with engine.begin() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

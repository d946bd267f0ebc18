"""Campaign leases: who runs a campaign, until when (see `store.leases`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Five nullable columns on `campaigns`; existing campaigns get no lease (a campaign stored as
running by an older optforge keeps reading as running: nothing says who ran it).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
COLUMNS = ("lease_token", "lease_host", "lease_pid", "lease_since", "lease_expires")


def upgrade() -> None:
    # batch mode: SQLite cannot drop columns in place (downgrade), and adding in a batch
    # keeps the two directions symmetric on every backend
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("lease_token", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("lease_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lease_since", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("lease_expires", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)

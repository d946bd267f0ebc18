"""Islands: several search processes run one campaign as islands sharing one database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Each island is a campaign row (its own population, checkpoint, lease and budget) that names
its group (`island_group`, the campaign's name as the user gave it) and its index
(`island`). `migrations` records every program an island took in from another one. Existing
campaigns are no island (both columns NULL).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("island_group", sa.String(200), nullable=True))
        batch.add_column(sa.Column("island", sa.Integer(), nullable=True))
        batch.create_index("ix_campaigns_island_group", ["island_group"])
        batch.create_unique_constraint("uq_campaigns_island_group_island", ["island_group", "island"])
    op.create_table(
        "migrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(),
                  sa.ForeignKey("campaigns.id", name="fk_migrations_campaign_id_campaigns"),
                  nullable=False),
        sa.Column("source_campaign_id", sa.Integer(),
                  sa.ForeignKey("campaigns.id",
                                name="fk_migrations_source_campaign_id_campaigns"),
                  nullable=False),
        sa.Column("program_id", sa.Integer(),
                  sa.ForeignKey("programs.id", name="fk_migrations_program_id_programs"),
                  nullable=False),
        sa.Column("score", sa.Float(precision=53), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_migrations"),
        sa.UniqueConstraint("campaign_id", "program_id",
                            name="uq_migrations_campaign_id_program_id"),
    )


def downgrade() -> None:
    op.drop_table("migrations")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_constraint("uq_campaigns_island_group_island", type_="unique")
        batch.drop_index("ix_campaigns_island_group")
        batch.drop_column("island")
        batch.drop_column("island_group")

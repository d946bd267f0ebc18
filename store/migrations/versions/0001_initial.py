"""Initial schema: campaigns, programs, evaluations with per-task results, lineage and
campaign checkpoints.

Revision ID: 0001
Revises:
Create Date: 2025-11-22

Column types are spelled out with plain SQLAlchemy types (what the database holds), not the
store's Python-side type decorators, so that this migration keeps meaning what it meant
when later code changes: IEEE floats are DOUBLE PRECISION / REAL, JSON is TEXT, timestamps
are TIMESTAMP WITH TIME ZONE (naive UTC on SQLite).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DOUBLE = sa.Float(precision=53)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.UniqueConstraint("name", name="uq_campaigns_name"),
        sa.CheckConstraint("status IN ('running', 'paused', 'finished', 'failed')",
                           name="ck_campaigns_status"),
    )
    op.create_table(
        "programs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("structural_hash", sa.String(128), nullable=False),
        sa.Column("canonical_hash", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("statements", sa.Integer(), nullable=False),
        sa.Column("complexity", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_programs"),
        sa.UniqueConstraint("structural_hash", name="uq_programs_structural_hash"),
        sa.CheckConstraint("statements >= 0", name="ck_programs_statements"),
        sa.CheckConstraint("complexity >= 0", name="ck_programs_complexity"),
    )
    op.create_index("ix_programs_canonical_hash", "programs", ["canonical_hash"])
    op.create_index("ix_programs_fingerprint", "programs", ["fingerprint"])

    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("suite", sa.String(64), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("score", DOUBLE, nullable=True),
        sa.Column("rank_score", DOUBLE, nullable=True),
        sa.Column("best_lr", DOUBLE, nullable=True),
        sa.Column("wall_time", DOUBLE, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("key", sa.String(255), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"],
                                name="fk_evaluations_program_id_programs"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"],
                                name="fk_evaluations_campaign_id_campaigns"),
        sa.UniqueConstraint("campaign_id", "key", name="uq_evaluations_campaign_id_key"),
        sa.CheckConstraint("stage >= 0", name="ck_evaluations_stage"),
        sa.CheckConstraint("wall_time IS NULL OR wall_time >= 0",
                           name="ck_evaluations_wall_time"),
    )
    op.create_index("ix_evaluations_program_id", "evaluations", ["program_id"])
    op.create_index("ix_evaluations_campaign_suite_rank", "evaluations",
                    ["campaign_id", "suite", "rank_score"])
    op.create_index("ix_evaluations_suite_rank", "evaluations", ["suite", "rank_score"])

    op.create_table(
        "task_results",
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("score", DOUBLE, nullable=True),
        sa.Column("loss", DOUBLE, nullable=True),
        sa.Column("best_lr", DOUBLE, nullable=True),
        sa.Column("wall_time", DOUBLE, nullable=True),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("evaluation_id", "task", name="pk_task_results"),
        sa.ForeignKeyConstraint(["evaluation_id"], ["evaluations.id"], ondelete="CASCADE",
                                name="fk_task_results_evaluation_id_evaluations"),
    )
    op.create_index("ix_task_results_task", "task_results", ["task"])

    op.create_table(
        "lineage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.Column("mutation", sa.String(64), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage"),
        sa.ForeignKeyConstraint(["child_id"], ["programs.id"],
                                name="fk_lineage_child_id_programs"),
        sa.ForeignKeyConstraint(["parent_id"], ["programs.id"],
                                name="fk_lineage_parent_id_programs"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"],
                                name="fk_lineage_campaign_id_campaigns"),
        sa.UniqueConstraint("child_id", "parent_id", "mutation", "campaign_id",
                            name="uq_lineage_child_id_parent_id_mutation_campaign_id"),
        sa.CheckConstraint("child_id <> parent_id", name="ck_lineage_not_self"),
    )
    op.create_index("ix_lineage_child_id", "lineage", ["child_id"])
    op.create_index("ix_lineage_parent_id", "lineage", ["parent_id"])

    op.create_table(
        "checkpoints",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("population", sa.Text(), nullable=False),
        sa.Column("rng_state", sa.Text(), nullable=False),
        sa.Column("counters", sa.Text(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_checkpoints"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE",
                                name="fk_checkpoints_campaign_id_campaigns"),
    )


def downgrade() -> None:
    for table in ("checkpoints", "lineage", "task_results", "evaluations", "programs",
                  "campaigns"):
        op.drop_table(table)

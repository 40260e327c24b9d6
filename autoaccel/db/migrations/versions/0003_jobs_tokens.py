"""The service's search jobs (a queue with leases) and its bearer tokens (stored hashed).

Revision ID: 0003
Revises: 0002
Create Date: 2026-08-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "autoaccel_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("study_name", sa.String(255), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", _timestamp(), nullable=True),
        sa.Column("heartbeat_at", _timestamp(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("recipe_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("submitted_by", sa.String(255), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f("ck_autoaccel_jobs_status")
        ),
        sa.ForeignKeyConstraint(
            ["recipe_id"],
            ["autoaccel_recipes.id"],
            name=op.f("fk_autoaccel_jobs_recipe_id_autoaccel_recipes"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoaccel_jobs")),
        sa.UniqueConstraint("study_name", name=op.f("uq_autoaccel_jobs_study_name")),
    )
    op.create_index(op.f("ix_autoaccel_jobs_model_id"), "autoaccel_jobs", ["model_id"])
    op.create_index("ix_autoaccel_jobs_queue", "autoaccel_jobs", ["status", "created_at"])
    op.create_table(
        "autoaccel_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("revoked_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoaccel_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_autoaccel_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_autoaccel_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("autoaccel_tokens")
    op.drop_index("ix_autoaccel_jobs_queue", table_name="autoaccel_jobs")
    op.drop_index(op.f("ix_autoaccel_jobs_model_id"), table_name="autoaccel_jobs")
    op.drop_table("autoaccel_jobs")

"""Recipes record where they came from (``source``); recipe lookups by (model, workload) get one index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-08-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add a CHECK constraint in place, so the table is copied (rows keep their ids).
    with op.batch_alter_table("autoaccel_recipes") as batch:
        batch.add_column(sa.Column("source", sa.String(16), server_default="search", nullable=False))
        batch.create_check_constraint(
            op.f("ck_autoaccel_recipes_source"), "source IN ('search', 'import', 'hub', 'manual')"
        )
        batch.drop_index(op.f("ix_autoaccel_recipes_model_ref_id"))
        batch.create_index("ix_autoaccel_recipes_lookup", ["model_ref_id", "workload_id"])


def downgrade() -> None:
    with op.batch_alter_table("autoaccel_recipes") as batch:
        batch.drop_index("ix_autoaccel_recipes_lookup")
        batch.create_index(op.f("ix_autoaccel_recipes_model_ref_id"), ["model_ref_id"])
        batch.drop_constraint(op.f("ck_autoaccel_recipes_source"), type_="check")
        batch.drop_column("source")

"""Initial schema: models, hardware profiles, workloads, studies, trials and recipes.

Revision ID: 0001
Revises:
Create Date: 2026-08-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "autoaccel_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("revision", sa.String(255), nullable=False),
        sa.Column("pipeline_class", sa.String(255), nullable=True),
        sa.Column("family", sa.String(64), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoaccel_models")),
        sa.UniqueConstraint("model_id", "revision", name=op.f("uq_autoaccel_models_model_id_revision")),
    )
    op.create_table(
        "autoaccel_hardware",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("device_kind", sa.String(32), nullable=False),
        sa.Column("arch_class", sa.String(64), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("driver", sa.String(64), nullable=True),
        sa.Column("cuda_version", sa.String(32), nullable=True),
        sa.Column("compute_capability", sa.String(16), nullable=True),
        sa.Column("torch_version", sa.String(64), nullable=True),
        sa.Column("diffusers_version", sa.String(64), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoaccel_hardware")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_autoaccel_hardware_fingerprint")),
    )
    op.create_index(op.f("ix_autoaccel_hardware_key"), "autoaccel_hardware", ["key"])
    op.create_index(op.f("ix_autoaccel_hardware_arch_class"), "autoaccel_hardware", ["arch_class"])
    op.create_table(
        "autoaccel_workloads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoaccel_workloads")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_autoaccel_workloads_fingerprint")),
    )
    op.create_table(
        "autoaccel_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("optuna_study_name", sa.String(255), nullable=True),
        sa.Column("model_ref_id", sa.Integer(), nullable=False),
        sa.Column("hardware_id", sa.Integer(), nullable=False),
        sa.Column("workload_id", sa.Integer(), nullable=True),
        sa.Column("budget", sa.String(1024), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint("status IN ('running', 'complete', 'failed')", name=op.f("ck_autoaccel_studies_status")),
        sa.ForeignKeyConstraint(
            ["model_ref_id"], ["autoaccel_models.id"], name=op.f("fk_autoaccel_studies_model_ref_id_autoaccel_models")
        ),
        sa.ForeignKeyConstraint(
            ["hardware_id"], ["autoaccel_hardware.id"], name=op.f("fk_autoaccel_studies_hardware_id_autoaccel_hardware")
        ),
        sa.ForeignKeyConstraint(
            ["workload_id"],
            ["autoaccel_workloads.id"],
            name=op.f("fk_autoaccel_studies_workload_id_autoaccel_workloads"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoaccel_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_autoaccel_studies_name")),
    )
    op.create_index(op.f("ix_autoaccel_studies_model_ref_id"), "autoaccel_studies", ["model_ref_id"])
    op.create_index(op.f("ix_autoaccel_studies_hardware_id"), "autoaccel_studies", ["hardware_id"])
    op.create_table(
        "autoaccel_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("optuna_trial_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("speedup", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "state IN ('running', 'complete', 'pruned', 'failed')", name=op.f("ck_autoaccel_trials_state")
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["autoaccel_studies.id"],
            name=op.f("fk_autoaccel_trials_study_id_autoaccel_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoaccel_trials")),
        sa.UniqueConstraint("study_id", "number", name=op.f("uq_autoaccel_trials_study_id_number")),
    )
    op.create_table(
        "autoaccel_recipes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_ref_id", sa.Integer(), nullable=False),
        sa.Column("hardware_id", sa.Integer(), nullable=False),
        sa.Column("workload_id", sa.Integer(), nullable=True),
        sa.Column("budget", sa.String(1024), nullable=True),
        sa.Column("recipe", sa.JSON(), nullable=False),
        sa.Column("speedup", sa.Float(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("validated", sa.Boolean(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_ref_id"], ["autoaccel_models.id"], name=op.f("fk_autoaccel_recipes_model_ref_id_autoaccel_models")
        ),
        sa.ForeignKeyConstraint(
            ["hardware_id"], ["autoaccel_hardware.id"], name=op.f("fk_autoaccel_recipes_hardware_id_autoaccel_hardware")
        ),
        sa.ForeignKeyConstraint(
            ["workload_id"],
            ["autoaccel_workloads.id"],
            name=op.f("fk_autoaccel_recipes_workload_id_autoaccel_workloads"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["autoaccel_studies.id"],
            name=op.f("fk_autoaccel_recipes_study_id_autoaccel_studies"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoaccel_recipes")),
    )
    op.create_index(op.f("ix_autoaccel_recipes_model_ref_id"), "autoaccel_recipes", ["model_ref_id"])
    op.create_index(op.f("ix_autoaccel_recipes_hardware_id"), "autoaccel_recipes", ["hardware_id"])


def downgrade() -> None:
    op.drop_table("autoaccel_recipes")
    op.drop_table("autoaccel_trials")
    op.drop_table("autoaccel_studies")
    op.drop_table("autoaccel_workloads")
    op.drop_table("autoaccel_hardware")
    op.drop_table("autoaccel_models")

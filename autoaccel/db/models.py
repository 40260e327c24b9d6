"""SQLAlchemy 2.0 models of the recipe database.

Every table is prefixed ``autoaccel_`` so that Optuna's own tables (``studies``, ``trials``, ``version_info``,
``alembic_version``, ...) can live in the same database; our Alembic version table is ``autoaccel_alembic_version``.
Changing a model needs a migration in ``migrations/versions`` (``tests/test_db.py`` checks models == migrations).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

TABLE_PREFIX = "autoaccel_"
VERSION_TABLE = "autoaccel_alembic_version"
STUDY_STATUSES = ("running", "complete", "failed")
TRIAL_STATES = ("running", "complete", "pruned", "failed")
RECIPE_SOURCES = ("search", "import", "hub", "manual")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive, in UTC); naive input is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got naive {value!r}")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: UTCDateTime}


class ModelRef(Base):
    """A model repository at a revision (a recipe without a revision is stored under ``main``)."""

    __tablename__ = "autoaccel_models"
    __table_args__ = (UniqueConstraint("model_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[str] = mapped_column(String(255))
    revision: Mapped[str] = mapped_column(String(255))
    pipeline_class: Mapped[str | None] = mapped_column(String(255))
    family: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class HardwareProfileRow(Base):
    """A device and the software stack measured on it. ``raw`` keeps the whole profile.

    ``key`` names the device (`autoaccel.hardware.HardwareProfile.key`, e.g. ``nvidia-h100-80gb-hbm3``); the unique
    ``fingerprint`` hashes the device and its driver, CUDA, torch and diffusers versions.
    """

    __tablename__ = "autoaccel_hardware"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    key: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    device_kind: Mapped[str] = mapped_column(String(32))
    arch_class: Mapped[str | None] = mapped_column(String(64), index=True)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    driver: Mapped[str | None] = mapped_column(String(64))
    cuda_version: Mapped[str | None] = mapped_column(String(32))
    compute_capability: Mapped[str | None] = mapped_column(String(16))
    torch_version: Mapped[str | None] = mapped_column(String(64))
    diffusers_version: Mapped[str | None] = mapped_column(String(64))
    raw: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WorkloadRow(Base):
    """What was measured (resolution, steps, guidance, prompt set, ...), identified by a fingerprint of its JSON."""

    __tablename__ = "autoaccel_workloads"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Study(Base):
    """One search for a (model, hardware, workload, budget); ``optuna_study_name`` names its Optuna study."""

    __tablename__ = "autoaccel_studies"
    __table_args__ = (CheckConstraint(_in("status", STUDY_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    optuna_study_name: Mapped[str | None] = mapped_column(String(255))
    model_ref_id: Mapped[int] = mapped_column(ForeignKey("autoaccel_models.id"), index=True)
    hardware_id: Mapped[int] = mapped_column(ForeignKey("autoaccel_hardware.id"), index=True)
    workload_id: Mapped[int | None] = mapped_column(ForeignKey("autoaccel_workloads.id"))
    budget: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    model: Mapped[ModelRef] = relationship(lazy="raise")
    hardware: Mapped[HardwareProfileRow] = relationship(lazy="raise")
    workload: Mapped[WorkloadRow | None] = relationship(lazy="raise")
    trials: Mapped[list[Trial]] = relationship(back_populates="study", lazy="raise", passive_deletes=True)


class Trial(Base):
    """One evaluated configuration of a study: its params, every measured metric and the outcome."""

    __tablename__ = "autoaccel_trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number"),
        CheckConstraint(_in("state", TRIAL_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("autoaccel_studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    optuna_trial_id: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="running")
    params: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    speedup: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    study: Mapped[Study] = relationship(back_populates="trials", lazy="raise")


class RecipeRow(Base):
    """A validated (or imported) recipe with where it was measured and what it achieved.

    ``quality`` maps each quality metric to validated aggregates, e.g. ``{"lpips": {"mean": 0.04, "p90": 0.07,
    "max": 0.1}}`` (optionally ``"values"``: the per-image list); `autoaccel.db.best_recipe` checks budgets on it.
    """

    __tablename__ = "autoaccel_recipes"
    __table_args__ = (
        CheckConstraint(_in("source", RECIPE_SOURCES), name="source"),
        Index("ix_autoaccel_recipes_lookup", "model_ref_id", "workload_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_ref_id: Mapped[int] = mapped_column(ForeignKey("autoaccel_models.id"))
    hardware_id: Mapped[int] = mapped_column(ForeignKey("autoaccel_hardware.id"), index=True)
    workload_id: Mapped[int | None] = mapped_column(ForeignKey("autoaccel_workloads.id"))
    budget: Mapped[str | None] = mapped_column(String(1024))
    recipe: Mapped[dict[str, Any]]
    speedup: Mapped[float] = mapped_column(Float)
    quality: Mapped[dict[str, Any]]
    validated: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(16), default="search", server_default="search")
    study_id: Mapped[int | None] = mapped_column(ForeignKey("autoaccel_studies.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    model: Mapped[ModelRef] = relationship(lazy="raise")
    hardware: Mapped[HardwareProfileRow] = relationship(lazy="raise")
    workload: Mapped[WorkloadRow | None] = relationship(lazy="raise")
    study: Mapped[Study | None] = relationship(lazy="raise")


class Job(Base):
    """A search job of the service: queued by a client, claimed and run by a worker (`autoaccel.db.jobs`).

    ``request`` holds what to search (model, revision, budget, workload, n_trials, timeout_s, include/exclude, seed);
    ``study_name`` names its study (ours and Optuna's), which extra workers may join. A running job's worker renews
    ``lease_expires_at``; an expired lease sends the job back to the queue (or fails it after ``max_attempts`` runs).
    """

    __tablename__ = "autoaccel_jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index("ix_autoaccel_jobs_queue", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    model_id: Mapped[str] = mapped_column(String(255), index=True)
    device: Mapped[str | None] = mapped_column(String(32))
    request: Mapped[dict[str, Any]]
    study_name: Mapped[str] = mapped_column(String(255), unique=True)
    progress: Mapped[dict[str, Any]]
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    recipe_id: Mapped[int | None] = mapped_column(ForeignKey("autoaccel_recipes.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    submitted_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiToken(Base):
    """A bearer token of the service, stored as the sha256 of its secret; ``admin`` tokens may also delete."""

    __tablename__ = "autoaccel_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]

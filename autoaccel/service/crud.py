"""Read queries of the service that the `RecipeDB` facade does not have: models and hardware with recipe counts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db.models import HardwareProfileRow, ModelRef, RecipeRow


def list_models(session: Session, *, model_id: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list, int]:
    """Models known to the database with their recipe counts, by id then revision: (one page, total)."""
    where = [ModelRef.model_id == model_id] if model_id is not None else []
    total = session.scalar(select(func.count()).select_from(ModelRef).where(*where))
    recipes = select(func.count(RecipeRow.id)).where(RecipeRow.model_ref_id == ModelRef.id).scalar_subquery()
    page = (
        select(ModelRef, recipes)
        .where(*where)
        .order_by(ModelRef.model_id, ModelRef.revision)
        .limit(limit)
        .offset(offset)
    )
    rows = [_fields(m, ("model_id", "revision", "pipeline_class", "family"), n) for m, n in session.execute(page)]
    return rows, int(total or 0)


def list_hardware(
    session: Session, *, arch_class: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list, int]:
    """Hardware profiles known to the database with their recipe counts, by key: (one page, total)."""
    hw = HardwareProfileRow
    where = [hw.arch_class == arch_class] if arch_class is not None else []
    total = session.scalar(select(func.count()).select_from(hw).where(*where))
    recipes = select(func.count(RecipeRow.id)).where(RecipeRow.hardware_id == hw.id).scalar_subquery()
    page = select(hw, recipes).where(*where).order_by(hw.key, hw.id).limit(limit).offset(offset)
    names = (
        "key",
        "fingerprint",
        "name",
        "device_kind",
        "arch_class",
        "memory_bytes",
        "driver",
        "cuda_version",
        "compute_capability",
        "torch_version",
        "diffusers_version",
    )
    return [_fields(row, names, n) for row, n in session.execute(page)], int(total or 0)


def _fields(row: Any, names: tuple[str, ...], recipes: int) -> dict[str, Any]:
    return {**{name: getattr(row, name) for name in names}, "recipes": int(recipes or 0)}


def submit_search(db: Any, search: Any, *, submitted_by: str | None = None) -> Any:
    """Queues a validated `autoaccel.service.schemas.SearchCreate` as a job; returns its `JobInfo`."""
    from ..aliases import canonical_id

    return db.submit_job(
        search.model_dump(mode="json"),
        model_id=canonical_id(search.model),
        device=search.device,
        submitted_by=submitted_by,
    )

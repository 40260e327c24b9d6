"""``/v1/models`` and ``/v1/hardware``: what the database knows, with recipe counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ...aliases import canonical_id
from ..crud import list_hardware, list_models
from ..deps import DBDep
from ..schemas import HardwareListPublic, HardwarePublic, ModelName, ModelPublic, ModelsPublic, Text
from ._params import Limit, Offset

router = APIRouter(tags=["catalog"])


@router.get("/models")
def get_models(
    db: DBDep,
    model: Annotated[ModelName | None, Query(description="Only this model (Hub id or alias).")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ModelsPublic:
    """Models (at each revision) known to the database."""
    with db.session() as s:
        rows, total = list_models(s, model_id=canonical_id(model) if model else None, limit=limit, offset=offset)
    return ModelsPublic(data=[ModelPublic(**r) for r in rows], count=total)


@router.get("/hardware")
def get_hardware(
    db: DBDep,
    arch_class: Annotated[Text | None, Query(description="e.g. hopper, ampere, cpu-x86_64.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> HardwareListPublic:
    """Hardware profiles (device and software stack) recipes were measured on."""
    with db.session() as s:
        rows, total = list_hardware(s, arch_class=arch_class, limit=limit, offset=offset)
    return HardwareListPublic(data=[HardwarePublic(**r) for r in rows], count=total)

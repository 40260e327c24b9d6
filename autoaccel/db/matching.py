"""Choosing the recipe to serve: `best_recipe`, with hardware fallbacks and budget checks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..errors import RecipeError
from ..recipes import Recipe
from .models import HardwareProfileRow, ModelRef, RecipeRow, WorkloadRow
from .records import hardware_columns, hardware_dict

logger = logging.getLogger("autoaccel.db")

Fallback = Literal["exact", "same_gpu", "same_arch"]


@dataclass(frozen=True)
class Match:
    """The recipe chosen by `best_recipe`.

    Args:
        recipe: The recipe.
        recipe_id: Its database id.
        fallback: ``exact`` (measured on this hardware), ``same_gpu`` (same device name, other driver or software
            stack) or ``same_arch`` (same architecture class, another device).
        speedup: Its measured speedup (on the hardware it was measured on).
        hardware_key: Key of the hardware it was measured on.
        hardware_name: Name of that device.
    """

    recipe: Recipe
    recipe_id: int
    fallback: Fallback
    speedup: float
    hardware_key: str
    hardware_name: str


def best_recipe(
    session: Session,
    model_id: str,
    revision: str | None,
    hardware: Any,
    workload_fingerprint: str | None = None,
    budget: str | None = None,
) -> Match | None:
    """The fastest validated recipe for a model on this hardware that meets ``budget``, or None.

    Candidates are the validated recipes of ``model_id`` (at ``revision``; None: any revision) measured on
    ``workload_fingerprint`` (None: any workload). The workload is never relaxed: speed and quality depend on the
    resolution and above all on the number of steps, which several methods (caches, step schedules) are tuned to.
    The hardware is relaxed in this order, and the first level with a recipe that meets the budget wins:

    1. ``exact``: the same device and software stack (driver, CUDA, torch and diffusers versions), i.e. the same
       hardware fingerprint. A bare device key carries no versions: any stack on that device is exact.
    2. ``same_gpu``: the same device (same key, e.g. ``nvidia-h100-80gb-hbm3``, or the same name ignoring case)
       with another software stack.
    3. ``same_arch``: the same architecture class (e.g. ``hopper``), another device.

    Fallbacks log a warning: the speedup (and, for methods such as quantization, the quality) was measured
    elsewhere, so validate the recipe on this machine. Within a level the highest speedup wins (then the newest).

    A recipe meets the budget when every clause holds on its stored quality aggregates (``quality[metric][agg]``,
    or the aggregate of ``quality[metric]["values"]``). A clause whose metric or aggregation is not stored fails:
    the recipe cannot be shown to meet it. Without `autoaccel.budget` the stored budget text must equal ``budget``.
    ``budget=None`` accepts every validated recipe.

    Args:
        session: Open session.
        model_id / revision: The model.
        hardware: This machine: a `HardwareProfile`, a hardware dict, a device key or a stored hardware fingerprint.
        workload_fingerprint: `autoaccel.db.workload_fingerprint` of the workload, or None for any.
        budget: Budget text such as ``"p90(lpips)<0.15 and psnr>30"``, or None.

    Raises:
        BudgetError: ``budget`` does not parse.
    """
    meets = _budget_check(budget)
    target = _target(session, hardware)
    hw = HardwareProfileRow
    same_hw = [hw.key == target.key]
    if target.name:
        same_hw.append(func.lower(hw.name) == target.name.lower())
    if target.arch:
        same_hw.append(hw.arch_class == target.arch)
    query = (
        select(RecipeRow, hw)
        .join(RecipeRow.model)
        .join(RecipeRow.hardware)
        .outerjoin(RecipeRow.workload)
        .where(ModelRef.model_id == model_id, RecipeRow.validated.is_(True), or_(*same_hw))
        .order_by(RecipeRow.speedup.desc(), RecipeRow.created_at.desc(), RecipeRow.id.desc())
    )
    if revision is not None:
        query = query.where(ModelRef.revision == revision)
    if workload_fingerprint is not None:
        query = query.where(WorkloadRow.fingerprint == workload_fingerprint)
    candidates = session.execute(query).all()
    for level in ("exact", "same_gpu", "same_arch"):
        for row, row_hw in candidates:
            if _level(target, row_hw) != level or not meets(row):
                continue
            try:
                recipe = Recipe.from_dict(row.recipe)
            except RecipeError as e:
                logger.warning("skipping stored recipe %d, which this autoaccel cannot load: %s", row.id, e)
                continue
            if level != "exact":
                logger.warning(
                    "no recipe for %s measured on this hardware (%s); using recipe %d measured on %s (%s, %s): "
                    "validate it on this machine before relying on its speedup and quality",
                    model_id,
                    target.key,
                    row.id,
                    row_hw.name,
                    row_hw.key,
                    "same GPU model, other software" if level == "same_gpu" else f"same architecture {target.arch}",
                )
            return Match(recipe, row.id, level, row.speedup, row_hw.key, row_hw.name)  # type: ignore[arg-type]
    return None


@dataclass(frozen=True)
class _Target:
    fingerprint: str | None  # None: a bare device key was given, so any software stack on that device is exact
    key: str
    name: str | None
    arch: str | None


def _target(session: Session, hardware: Any) -> _Target:
    if isinstance(hardware, str):
        where = or_(HardwareProfileRow.fingerprint == hardware, HardwareProfileRow.key == hardware)
        row = session.scalars(select(HardwareProfileRow).where(where).limit(1)).first()
        if row is None:
            return _Target(None, hardware, None, None)
        exact = row.fingerprint if row.fingerprint == hardware else None
        return _Target(exact, row.key, row.name, row.arch_class)
    columns = hardware_columns(hardware_dict(hardware))
    return _Target(columns["fingerprint"], columns["key"], columns["name"], columns["arch_class"])


def _level(target: _Target, row: HardwareProfileRow) -> Fallback | None:
    same_device = row.key == target.key or (target.name is not None and row.name.lower() == target.name.lower())
    if same_device and target.fingerprint in (None, row.fingerprint):
        return "exact"
    if same_device:
        return "same_gpu"
    if target.arch is not None and row.arch_class == target.arch:
        return "same_arch"
    return None


def _budget_check(budget: str | None) -> Callable[[RecipeRow], bool]:
    if budget is None:
        return lambda row: True
    try:
        from ..budget import Budget
    except ImportError:  # pragma: no cover - the budget module ships with autoaccel; kept for partial installs
        text = " ".join(budget.lower().split())
        return lambda row: row.budget is not None and " ".join(row.budget.lower().split()) == text
    parsed = Budget.parse(budget)
    return lambda row: meets_budget(parsed, row.quality)


def meets_budget(budget: Any, quality: Mapping[str, Any]) -> bool:
    """Whether stored quality (``{metric: {"mean": ..., "values": [...]}}``) satisfies every clause of a parsed
    `Budget`: per-image values when stored, else the aggregates (`Budget.stored_violations`)."""
    from .. import metrics

    values: dict[str, list[float]] = {}
    aggregates: dict[str, dict[str, float]] = {}
    for name, stats in quality.items():
        canonical = metrics.canonical_name(name)
        if canonical is None or not isinstance(stats, Mapping):
            continue
        raw = stats.get("values")
        if isinstance(raw, list) and raw and all(_number(v) for v in raw):
            values[canonical] = [float(v) for v in raw]
        aggregates[canonical] = {k: float(v) for k, v in stats.items() if _number(v)}
    return not budget.stored_violations(values, aggregates)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

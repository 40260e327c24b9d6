"""Reads and writes of the recipe database. Every function works inside the caller's session (one transaction).

`RecipeDB` wraps each in its own transaction; use these directly to combine several writes atomically. Upserts use
``INSERT ... ON CONFLICT DO NOTHING`` and then read the row, so concurrent writers of the same row agree on one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from ..errors import RecipeError
from ..recipes import Recipe
from .errors import InvalidRecordError, NotFoundError
from .models import (
    RECIPE_SOURCES,
    STUDY_STATUSES,
    TRIAL_STATES,
    Base,
    HardwareProfileRow,
    ModelRef,
    RecipeRow,
    Study,
    Trial,
    WorkloadRow,
    utcnow,
)
from .records import (
    DEFAULT_REVISION,
    RecipeInfo,
    StudyInfo,
    TrialInfo,
    hardware_columns,
    hardware_dict,
    to_json,
    workload_fingerprint,
    workload_spec,
)

_RECIPE_JOINS = (joinedload(RecipeRow.model), joinedload(RecipeRow.hardware), joinedload(RecipeRow.workload))
_STUDY_JOINS = (joinedload(Study.model), joinedload(Study.hardware), joinedload(Study.workload))


def _insert_ignore(session: Session, table: type[Base], values: dict[str, Any], unique: list[str]) -> None:
    """Inserts a row unless one with the same ``unique`` columns exists (or is being inserted concurrently)."""
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        session.execute(insert(table).values(**values).on_conflict_do_nothing(index_elements=unique))
        return
    try:  # other backends: a savepoint absorbs the duplicate
        with session.begin_nested():
            session.add(table(**values))
    except IntegrityError:
        pass


def _one(session: Session, table: type[Base], **where: Any) -> Any:
    return session.scalars(select(table).filter_by(**where)).one()


# -- models, hardware, workloads ------------------------------------------------------------------------------------
def upsert_model(
    session: Session,
    model_id: str,
    revision: str | None = None,
    *,
    pipeline_class: str | None = None,
    family: str | None = None,
) -> ModelRef:
    """The row of ``model_id`` at ``revision`` (None means ``main``), created if new; fills a missing pipeline class."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidRecordError(f"model_id must be a non-empty string, got {model_id!r}")
    key = {"model_id": model_id, "revision": revision or DEFAULT_REVISION}
    _insert_ignore(session, ModelRef, {**key, "pipeline_class": pipeline_class, "family": family}, list(key))
    row = _one(session, ModelRef, **key)
    if pipeline_class and not row.pipeline_class:
        row.pipeline_class = pipeline_class
    if family and not row.family:
        row.family = family
    return row


def upsert_hardware(session: Session, hardware: Any) -> HardwareProfileRow:
    """The row of a hardware profile (a dict or `HardwareProfile`, see `hardware_dict`), created if new."""
    columns = hardware_columns(hardware_dict(hardware))
    _insert_ignore(session, HardwareProfileRow, columns, ["fingerprint"])
    return _one(session, HardwareProfileRow, fingerprint=columns["fingerprint"])


def upsert_workload(session: Session, workload: Any) -> WorkloadRow:
    """The row of a workload (a dict or `autoaccel.workload.Workload`) under its `workload_fingerprint`."""
    fp = workload_fingerprint(workload)
    _insert_ignore(session, WorkloadRow, {"fingerprint": fp, "spec": workload_spec(workload)}, ["fingerprint"])
    return _one(session, WorkloadRow, fingerprint=fp)


def get_workload(session: Session, fingerprint: str) -> WorkloadRow:
    """Raises `NotFoundError` if no workload has this fingerprint."""
    row = session.scalars(select(WorkloadRow).filter_by(fingerprint=fingerprint)).one_or_none()
    if row is None:
        raise NotFoundError(f"no workload with fingerprint {fingerprint!r}")
    return row


def _workload(session: Session, workload: Any) -> WorkloadRow | None:
    if workload is None:
        return None
    return get_workload(session, workload) if isinstance(workload, str) else upsert_workload(session, workload)


# -- studies and trials ---------------------------------------------------------------------------------------------
def create_or_get_study(
    session: Session,
    name: str,
    *,
    model_id: str,
    hardware: Any,
    revision: str | None = None,
    workload: Any = None,
    budget: str | None = None,
    optuna_study_name: str | None = None,
) -> StudyInfo:
    """The study called ``name``, created if new; safe when several workers create it at once.

    Args:
        name: Unique study name.
        model_id / revision: The model searched.
        hardware: Hardware profile dict or `HardwareProfile`.
        workload: Workload (dict or `Workload`, upserted) or the fingerprint of a stored one.
        budget: The quality budget text.
        optuna_study_name: Name of the Optuna study in the same database (default: ``name``).

    Raises:
        InvalidRecordError: A study of that name exists for another model, revision, hardware or budget.
    """
    model = upsert_model(session, model_id, revision)
    hw = upsert_hardware(session, hardware)
    wl = _workload(session, workload)
    values = {
        "name": name,
        "optuna_study_name": optuna_study_name or name,
        "model_ref_id": model.id,
        "hardware_id": hw.id,
        "workload_id": wl.id if wl else None,
        "budget": budget,
        "status": "running",
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    _insert_ignore(session, Study, values, ["name"])
    study = session.scalars(select(Study).filter_by(name=name).options(*_STUDY_JOINS)).one()
    found = (study.model_ref_id, study.hardware_id, study.budget)
    if found != (model.id, hw.id, budget):
        raise InvalidRecordError(
            f"study {name!r} exists for {study.model.model_id}@{study.model.revision} on {study.hardware.key} "
            f"({study.hardware.fingerprint}) with budget {study.budget!r}; not {model_id}@{model.revision} on "
            f"{hw.key} ({hw.fingerprint}) with {budget!r}. Use another study name."
        )
    return StudyInfo.of(study)


def get_study(session: Session, name: str) -> StudyInfo:
    study = session.scalars(select(Study).filter_by(name=name).options(*_STUDY_JOINS)).one_or_none()
    if study is None:
        raise NotFoundError(f"no study named {name!r}")
    return StudyInfo.of(study)


def set_study_status(session: Session, study_id: int, status: str) -> None:
    """Sets a study's status: ``running``, ``complete`` or ``failed``."""
    if status not in STUDY_STATUSES:
        raise InvalidRecordError(f"study status must be one of {STUDY_STATUSES}, got {status!r}")
    study = session.get(Study, study_id)
    if study is None:
        raise NotFoundError(f"no study with id {study_id}")
    study.status = status


def record_trial(
    session: Session,
    study_id: int,
    number: int,
    *,
    params: Mapping[str, Any],
    state: str = "running",
    optuna_trial_id: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    speedup: float | None = None,
    error: str | None = None,
) -> TrialInfo:
    """Stores trial ``number`` of a study. JSON cannot hold NaN or infinities: they are stored as null.

    Raises:
        InvalidRecordError: Unknown state, or params/metrics that are not JSON.
        DatabaseError: (from the session) the study has a trial with this number already.
    """
    _check_state(state)
    trial = Trial(
        study_id=study_id,
        number=number,
        optuna_trial_id=optuna_trial_id,
        state=state,
        params=to_json(params, "params"),
        metrics=to_json(metrics or {}, "metrics"),
        speedup=to_json(speedup, "speedup"),
        error=error,
        finished_at=None if state == "running" else utcnow(),
    )
    session.add(trial)
    session.flush()
    return TrialInfo.of(trial)


def update_trial(
    session: Session,
    trial_id: int,
    *,
    state: str | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    speedup: float | None = None,
    error: str | None = None,
) -> TrialInfo:
    """Updates the given fields (None leaves a field as is); leaving ``running`` sets ``finished_at``."""
    trial = session.get(Trial, trial_id)
    if trial is None:
        raise NotFoundError(f"no trial with id {trial_id}")
    if state is not None:
        _check_state(state)
        trial.state = state
        if state != "running" and trial.finished_at is None:
            trial.finished_at = utcnow()
    if params is not None:
        trial.params = to_json(params, "params")
    if metrics is not None:
        trial.metrics = to_json(metrics, "metrics")
    if speedup is not None:
        trial.speedup = to_json(speedup, "speedup")
    if error is not None:
        trial.error = error
    session.flush()
    return TrialInfo.of(trial)


def list_trials(session: Session, study_id: int) -> list[TrialInfo]:
    """A study's trials by number."""
    trials = session.scalars(select(Trial).filter_by(study_id=study_id).order_by(Trial.number))
    return [TrialInfo.of(t) for t in trials]


def _check_state(state: str) -> None:
    if state not in TRIAL_STATES:
        raise InvalidRecordError(f"trial state must be one of {TRIAL_STATES}, got {state!r}")


# -- recipes --------------------------------------------------------------------------------------------------------
def add_recipe(
    session: Session,
    recipe: Recipe,
    *,
    hardware: Any = None,
    workload_fingerprint: str | None = None,
    workload: Any = None,
    budget: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    speedup: float | None = None,
    validated: bool = True,
    study: str | int | None = None,
    source: str = "search",
) -> int:
    """Stores a recipe and returns its id. Missing arguments come from the recipe's own fields.

    Args:
        recipe: The recipe, stored as its JSON; it must name its ``model_id``.
        hardware: Where it was measured (dict or `HardwareProfile`); default ``recipe.hardware``.
        workload_fingerprint: Fingerprint of a stored workload.
        workload: Or the workload itself (dict or `Workload`, upserted). Default for both: ``recipe.workload``.
        budget: The budget it was validated against; default ``recipe.budget``.
        metrics: Validated quality aggregates per metric, e.g. ``{"lpips": {"mean": 0.04, "p90": 0.07}}``
            (``"values"`` may hold the per-image list); default: the dict-valued entries of ``recipe.metrics``.
        speedup: Measured speedup; default ``recipe.metrics["speedup"]``. Must be finite and positive.
        validated: Whether the quality was validated on held-out prompts; `best_recipe` only serves validated ones.
        study: Name or id of the study that found it.
        source: ``search``, ``import``, ``hub`` or ``manual``.
    """
    if recipe.model_id is None:
        raise RecipeError("a recipe stored in the database must name its model", field="model_id")
    if source not in RECIPE_SOURCES:
        raise InvalidRecordError(f"source must be one of {RECIPE_SOURCES}, got {source!r}")
    recipe_metrics = recipe.metrics or {}
    if speedup is None:
        speedup = recipe_metrics.get("speedup")  # type: ignore[assignment]
    if isinstance(speedup, bool) or not isinstance(speedup, (int, float)) or to_json(speedup, "speedup") is None:
        raise InvalidRecordError(f"speedup must be a finite number (argument or recipe.metrics), got {speedup!r}")
    if speedup <= 0:
        raise InvalidRecordError(f"speedup must be positive, got {speedup}")
    if metrics is None:
        metrics = {k: v for k, v in recipe_metrics.items() if isinstance(v, Mapping)}
    hardware = hardware if hardware is not None else recipe.hardware
    if hardware is None:
        raise InvalidRecordError("add_recipe needs hardware= (or recipe.hardware): where was it measured?")
    model = upsert_model(session, recipe.model_id, recipe.revision, pipeline_class=recipe.pipeline_class)
    hw = upsert_hardware(session, hardware)
    if workload is not None and workload_fingerprint is not None:
        raise InvalidRecordError("give workload= or workload_fingerprint=, not both")
    given = next((w for w in (workload_fingerprint, workload, recipe.workload) if w is not None), None)
    wl = _workload(session, given)
    study_id = _study_id(session, study)
    row = RecipeRow(
        model_ref_id=model.id,
        hardware_id=hw.id,
        workload_id=wl.id if wl else None,
        budget=budget if budget is not None else recipe.budget,
        recipe=recipe.to_dict(),
        speedup=float(speedup),
        quality=to_json(metrics, "metrics"),
        validated=bool(validated),
        source=source,
        study_id=study_id,
    )
    session.add(row)
    session.flush()
    return row.id


def _study_id(session: Session, study: str | int | None) -> int | None:
    if study is None:
        return None
    where = Study.id == study if isinstance(study, int) else Study.name == study
    found = session.scalars(select(Study.id).where(where)).one_or_none()
    if found is None:
        raise NotFoundError(f"no study {study!r}")
    return found


def _recipe_row(session: Session, recipe_id: int) -> RecipeRow:
    row = session.scalars(select(RecipeRow).where(RecipeRow.id == recipe_id).options(*_RECIPE_JOINS)).one_or_none()
    if row is None:
        raise NotFoundError(f"no recipe with id {recipe_id}")
    return row


def get_recipe(session: Session, recipe_id: int) -> Recipe:
    """The stored recipe (validated again on load; a recipe the installed methods refuse raises `RecipeError`)."""
    return Recipe.from_dict(_recipe_row(session, recipe_id).recipe)


def get_recipe_info(session: Session, recipe_id: int) -> RecipeInfo:
    return RecipeInfo.of(_recipe_row(session, recipe_id))


def list_recipes(
    session: Session,
    *,
    model_id: str | None = None,
    revision: str | None = None,
    pipeline_class: str | None = None,
    hardware_key: str | None = None,
    hardware_name: str | None = None,
    arch_class: str | None = None,
    workload_fingerprint: str | None = None,
    validated: bool | None = None,
    source: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[RecipeInfo], int]:
    """Recipes matching every given filter, newest first: one page and the total count.

    ``hardware_key`` is the device key (`HardwareProfile.key`); ``hardware_name`` matches case-insensitively.
    """
    if limit < 0 or offset < 0:
        raise InvalidRecordError(f"limit and offset must be >= 0, got {limit} and {offset}")
    where: list[ColumnElement[bool]] = []
    if model_id is not None:
        where.append(ModelRef.model_id == model_id)
    if revision is not None:
        where.append(ModelRef.revision == revision)
    if pipeline_class is not None:
        where.append(ModelRef.pipeline_class == pipeline_class)
    if hardware_key is not None:
        where.append(HardwareProfileRow.key == hardware_key)
    if hardware_name is not None:
        where.append(func.lower(HardwareProfileRow.name) == hardware_name.lower())
    if arch_class is not None:
        where.append(HardwareProfileRow.arch_class == arch_class)
    if workload_fingerprint is not None:
        where.append(WorkloadRow.fingerprint == workload_fingerprint)
    if validated is not None:
        where.append(RecipeRow.validated.is_(validated))
    if source is not None:
        where.append(RecipeRow.source == source)
    ids = (
        select(RecipeRow.id).join(RecipeRow.model).join(RecipeRow.hardware).outerjoin(RecipeRow.workload).where(*where)
    )
    total = session.scalar(select(func.count()).select_from(ids.subquery()))
    page = (
        select(RecipeRow)
        .where(RecipeRow.id.in_(ids.scalar_subquery()))
        .options(*_RECIPE_JOINS)
        .order_by(RecipeRow.created_at.desc(), RecipeRow.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [RecipeInfo.of(row) for row in session.scalars(page)], int(total or 0)


def delete_recipe(session: Session, recipe_id: int) -> None:
    """Raises `NotFoundError` if there is no such recipe."""
    if session.execute(delete(RecipeRow).where(RecipeRow.id == recipe_id)).rowcount == 0:
        raise NotFoundError(f"no recipe with id {recipe_id}")

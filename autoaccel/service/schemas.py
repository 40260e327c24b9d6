"""Request and response bodies: a Base / Create / Public family per resource (input, storage and output never mix)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator

from ..recipes import Recipe

NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
"""A short text: 1-255 characters, no NUL (PostgreSQL cannot store one)."""
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][\w.\-/:]*$")]
"""A Hub id (``org/name``), an alias (``flux-dev``) or the test-only ``tiny:<kind>``."""
Revision = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\w.\-/]+$")]
Device = Annotated[str, StringConstraints(max_length=32, pattern=r"^[a-z]+(:\d{1,3})?$")]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Fallback = Literal["exact", "same_gpu", "same_arch"]


class ErrorBody(BaseModel):
    """Every error: a clear ``detail``; ``hint`` says what to do, ``field`` / ``errors`` locate bad input."""

    detail: str
    hint: str | None = None
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


# -- recipes --------------------------------------------------------------------------------------------------------
class RecipePublic(BaseModel):
    """A stored recipe's metadata; ``GET /v1/recipes/{id}`` gives the recipe itself."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    model_id: str
    revision: str
    pipeline_class: str | None
    hardware_key: str
    hardware_fingerprint: str
    hardware_name: str
    arch_class: str | None
    workload_fingerprint: str | None
    budget: str | None
    speedup: float
    quality: dict[str, Any]
    validated: bool
    source: str
    study_id: int | None
    created_at: dt.datetime


class RecipesPublic(BaseModel):
    data: list[RecipePublic]
    count: int = Field(description="Recipes matching the filters (all pages).")


class BestRecipePublic(BaseModel):
    """The recipe to use, and how well it matches the hardware asked for."""

    recipe_id: int
    fallback: Fallback = Field(
        description="exact: measured on this device and software stack; same_gpu: same device, other software; "
        "same_arch: another device of the same architecture class (validate it before relying on it)."
    )
    speedup: float
    hardware_key: str
    hardware_name: str
    recipe: Recipe


# -- searches -------------------------------------------------------------------------------------------------------
class SearchBase(BaseModel):
    """What to search: the model, the quality budget, the workload and how long to search."""

    model: ModelName = Field(description="Hub id or alias; `tiny:<kind>` is a test-only tiny random pipeline.")
    revision: Revision | None = None
    budget: str = Field(min_length=1, max_length=1024, pattern=NO_NUL, examples=["p90(lpips)<0.1"])
    workload: dict[str, JsonValue] | None = Field(
        default=None,
        description="A workload (prompts as a list or a built-in set name, seeds, height, width, "
        "num_inference_steps, ...); default: the pipeline's.",
    )
    n_trials: int = Field(default=30, ge=1, le=10_000)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400, allow_inf_nan=False)
    include: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        default=None, max_length=32, description="Only these methods."
    )
    exclude: list[Annotated[str, StringConstraints(max_length=64)]] = Field(default_factory=list, max_length=32)
    device: Device | None = Field(default=None, description="Only workers on this device run it (cuda, cuda:1, cpu).")
    seed: int | None = Field(default=0, ge=0, le=2**32 - 1)
    repeats: int = Field(default=3, ge=1, le=20, description="Timed generations per trial.")
    validation_repeats: int = Field(default=5, ge=1, le=50, description="Timed generations when validating.")


class SearchCreate(SearchBase):
    """A search to queue. The budget, method names and workload are validated as the search would."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: str) -> str:
        from ..budget import Budget

        return str(Budget.parse(value))

    @field_validator("include", "exclude")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        from .. import methods

        known = methods.available()
        unknown = [name for name in value or [] if name not in known]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(known)}")
        return value

    @field_validator("workload")
    @classmethod
    def _workload(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from .. import prompts
        from ..workload import Workload

        if value is None:
            return None
        if isinstance(value.get("prompts"), str) and value["prompts"] not in prompts.available():
            raise ValueError(
                f"prompts must be a list of prompts or a built-in prompt set ({', '.join(prompts.available())}); "
                "files are not read from requests"
            )
        return Workload.from_dict(value, source="workload").to_dict()


class ParetoPoint(BaseModel):
    trial: int
    speedup: float
    quality: float | None = Field(description="The budget's first metric, aggregated as in the budget.")
    methods: list[dict[str, Any]] = Field(default_factory=list)


class SearchProgress(BaseModel):
    trials_done: int = 0
    n_trials: int | None = None
    best_speedup: float | None = Field(default=None, description="Best speedup of a trial within the budget so far.")
    pareto: list[ParetoPoint] = Field(default_factory=list)
    note: str | None = None


class SearchPublic(SearchBase):
    """A search job: the request, its state and progress, and the recipe it stored."""

    id: int
    status: JobStatus
    model_id: str
    study_name: str
    progress: SearchProgress
    worker_id: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    recipe_id: int | None
    error: str | None
    submitted_by: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime

    @classmethod
    def of(cls, job: Any) -> SearchPublic:
        """From an `autoaccel.db.jobs.JobInfo`."""
        fields = {name: getattr(job, name) for name in cls.model_fields if name not in SearchBase.model_fields}
        request = {k: v for k, v in job.request.items() if k in SearchBase.model_fields}
        return cls.model_validate({**request, **fields, "progress": job.progress or {}})


class SearchesPublic(BaseModel):
    data: list[SearchPublic]
    count: int


# -- models, hardware, health ---------------------------------------------------------------------------------------
class ModelPublic(BaseModel):
    model_id: str
    revision: str
    pipeline_class: str | None
    family: str | None
    recipes: int


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int


class HardwarePublic(BaseModel):
    key: str
    fingerprint: str
    name: str
    device_kind: str
    arch_class: str | None
    memory_bytes: int | None
    driver: str | None
    cuda_version: str | None
    compute_capability: str | None
    torch_version: str | None
    diffusers_version: str | None
    recipes: int


class HardwareListPublic(BaseModel):
    data: list[HardwarePublic]
    count: int


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Ready(BaseModel):
    status: Literal["ready"]
    database: str
    schema_revision: str

"""`RecipeDB`: the recipe database behind one object, one transaction per call."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from ..recipes import Recipe
from . import jobs
from . import repository as repo
from .engine import engine_for, redact_url, session_scope
from .jobs import JobInfo, Lease, TokenInfo
from .matching import Match, best_recipe
from .migrate import _LOCK as _MIGRATION_LOCK
from .migrate import check_schema, migration_connection
from .records import RecipeInfo, StudyInfo, TrialInfo

if TYPE_CHECKING:
    import optuna


class RecipeDB:
    """The recipe database at ``url``: models, hardware, workloads, studies, trials and recipes.

    Every method runs in its own transaction; `session` gives one transaction for several `autoaccel.db.repository`
    calls. Safe to share between threads (each call takes its own connection). Optuna's storage lives in the same
    database (`optuna_storage`).

    Args:
        url: Database URL or SQLite file path; default ``AUTOACCEL_DB_URL``, else a per-user SQLite file
            (see `autoaccel.db.default_url`).
        create: Create the schema in a database without our tables. An older schema is never upgraded implicitly.

    Raises:
        DatabaseError: The database cannot be reached.
        SchemaVersionError: Its schema is not the one this autoaccel needs; the message gives the upgrade command.

    Example:
        >>> db = RecipeDB("sqlite:///recipes.db")
        >>> recipe_id = db.add_recipe(recipe, hardware=HardwareProfile.current(), workload=workload, speedup=2.1)
        >>> match = db.best_recipe("org/model", None, hardware=profile, budget="lpips<0.1")
    """

    def __init__(self, url: str | URL | None = None, *, create: bool = True) -> None:
        self.engine: Engine = engine_for(url)
        try:
            self.revision = check_schema(self.engine, create=create)
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The URL with its password hidden."""
        return redact_url(self.engine.url)

    def __repr__(self) -> str:
        return f"RecipeDB({self.url!r})"

    def close(self) -> None:
        """Closes pooled connections (the object stays usable; new calls reconnect)."""
        self.engine.dispose()

    def __enter__(self) -> RecipeDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, rollback on error (see `autoaccel.db.session_scope`)."""
        with session_scope(self.engine) as session:
            yield session

    def optuna_storage(self, **kwargs: Any) -> optuna.storages.RDBStorage:
        """Optuna's storage in this database (its tables sit beside ours); ``kwargs`` go to ``RDBStorage``.

        The storage has its own engine: ``storage.engine.dispose()`` when done with it.
        """
        import optuna

        url = self.engine.url.render_as_string(hide_password=False)
        if self.engine.dialect.name != "postgresql":
            return optuna.storages.RDBStorage(url, **kwargs)
        # Optuna creates its tables (and PostgreSQL enum types) on first use without a lock; workers starting together
        # would race on CREATE TYPE. Our migration lock makes them take turns. (A SQLite write lock held here would
        # block Optuna's own connection, so SQLite goes without.)
        with _MIGRATION_LOCK, migration_connection(self.engine):
            return optuna.storages.RDBStorage(url, **kwargs)

    # -- entities --------------------------------------------------------------------------------------------------
    def upsert_model(
        self,
        model_id: str,
        revision: str | None = None,
        *,
        pipeline_class: str | None = None,
        family: str | None = None,
    ) -> int:
        """Id of the model row (created if new)."""
        with self.session() as s:
            return repo.upsert_model(s, model_id, revision, pipeline_class=pipeline_class, family=family).id

    def upsert_hardware(self, hardware: Any) -> str:
        """Stores a hardware profile (dict or `HardwareProfile`) if new; returns its fingerprint (device + software)."""
        with self.session() as s:
            return repo.upsert_hardware(s, hardware).fingerprint

    def upsert_workload(self, workload: Any) -> str:
        """Stores a workload (dict or `Workload`) if new; returns its fingerprint."""
        with self.session() as s:
            return repo.upsert_workload(s, workload).fingerprint

    # -- studies and trials ------------------------------------------------------------------------------------------
    def create_or_get_study(
        self,
        name: str,
        *,
        model_id: str,
        hardware: Any,
        revision: str | None = None,
        workload: Any = None,
        budget: str | None = None,
        optuna_study_name: str | None = None,
    ) -> StudyInfo:
        """See `autoaccel.db.repository.create_or_get_study`."""
        with self.session() as s:
            return repo.create_or_get_study(
                s,
                name,
                model_id=model_id,
                hardware=hardware,
                revision=revision,
                workload=workload,
                budget=budget,
                optuna_study_name=optuna_study_name,
            )

    def get_study(self, name: str) -> StudyInfo:
        with self.session() as s:
            return repo.get_study(s, name)

    def set_study_status(self, study_id: int, status: str) -> None:
        with self.session() as s:
            repo.set_study_status(s, study_id, status)

    def record_trial(
        self,
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
        """See `autoaccel.db.repository.record_trial`."""
        with self.session() as s:
            return repo.record_trial(
                s,
                study_id,
                number,
                params=params,
                state=state,
                optuna_trial_id=optuna_trial_id,
                metrics=metrics,
                speedup=speedup,
                error=error,
            )

    def update_trial(
        self,
        trial_id: int,
        *,
        state: str | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        speedup: float | None = None,
        error: str | None = None,
    ) -> TrialInfo:
        """See `autoaccel.db.repository.update_trial`."""
        with self.session() as s:
            return repo.update_trial(
                s, trial_id, state=state, params=params, metrics=metrics, speedup=speedup, error=error
            )

    def list_trials(self, study_id: int) -> list[TrialInfo]:
        with self.session() as s:
            return repo.list_trials(s, study_id)

    # -- recipes -----------------------------------------------------------------------------------------------------
    def add_recipe(
        self,
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
        """Stores a recipe; returns its id. See `autoaccel.db.repository.add_recipe`."""
        with self.session() as s:
            return repo.add_recipe(
                s,
                recipe,
                hardware=hardware,
                workload_fingerprint=workload_fingerprint,
                workload=workload,
                budget=budget,
                metrics=metrics,
                speedup=speedup,
                validated=validated,
                study=study,
                source=source,
            )

    def get_recipe(self, recipe_id: int) -> Recipe:
        with self.session() as s:
            return repo.get_recipe(s, recipe_id)

    def get_recipe_info(self, recipe_id: int) -> RecipeInfo:
        with self.session() as s:
            return repo.get_recipe_info(s, recipe_id)

    def list_recipes(
        self,
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
        """Recipes matching every given filter, newest first: (one page, total count)."""
        with self.session() as s:
            return repo.list_recipes(
                s,
                model_id=model_id,
                revision=revision,
                pipeline_class=pipeline_class,
                hardware_key=hardware_key,
                hardware_name=hardware_name,
                arch_class=arch_class,
                workload_fingerprint=workload_fingerprint,
                validated=validated,
                source=source,
                limit=limit,
                offset=offset,
            )

    def delete_recipe(self, recipe_id: int) -> None:
        with self.session() as s:
            repo.delete_recipe(s, recipe_id)

    def best_recipe(
        self,
        model_id: str,
        revision: str | None,
        hardware: Any,
        workload_fingerprint: str | None = None,
        budget: str | None = None,
    ) -> Match | None:
        """See `autoaccel.db.matching.best_recipe` (exact hardware, then same GPU, then same architecture class)."""
        with self.session() as s:
            return best_recipe(s, model_id, revision, hardware, workload_fingerprint, budget)

    # -- service jobs and tokens (see `autoaccel.db.jobs`) -------------------------------------------------------------
    def submit_job(
        self,
        request: Mapping[str, Any],
        *,
        model_id: str,
        device: str | None = None,
        submitted_by: str | None = None,
        max_attempts: int = 3,
    ) -> JobInfo:
        """Queues a search job; see `autoaccel.db.jobs.submit_job`."""
        with self.session() as s:
            return jobs.submit_job(
                s, request, model_id=model_id, device=device, submitted_by=submitted_by, max_attempts=max_attempts
            )

    def get_job(self, job_id: int) -> JobInfo:
        with self.session() as s:
            return jobs.get_job(s, job_id)

    def list_jobs(
        self, *, status: str | None = None, model_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[JobInfo], int]:
        """Jobs matching the filters, newest first: (one page, total count)."""
        with self.session() as s:
            return jobs.list_jobs(s, status=status, model_id=model_id, limit=limit, offset=offset)

    def claim_job(self, worker_id: str, *, lease_s: float, devices: Sequence[str] | None = None) -> JobInfo | None:
        """Claims the oldest queued job (safe with many workers); see `autoaccel.db.jobs.claim_job`."""
        with self.session() as s:
            return jobs.claim_job(s, worker_id, lease_s=lease_s, devices=devices)

    def heartbeat_job(
        self, job_id: int, worker_id: str, *, lease_s: float, progress: Mapping[str, Any] | None = None
    ) -> Lease:
        """Renews a lease: ``"ok"``, ``"cancel"`` (cancellation requested) or ``"lost"`` (stop)."""
        with self.session() as s:
            return jobs.heartbeat_job(s, job_id, worker_id, lease_s=lease_s, progress=progress)

    def finish_job(
        self,
        job_id: int,
        worker_id: str,
        *,
        status: str,
        recipe_id: int | None = None,
        error: str | None = None,
        progress: Mapping[str, Any] | None = None,
    ) -> bool:
        with self.session() as s:
            return jobs.finish_job(
                s, job_id, worker_id, status=status, recipe_id=recipe_id, error=error, progress=progress
            )

    def release_job(self, job_id: int, worker_id: str) -> bool:
        with self.session() as s:
            return jobs.release_job(s, job_id, worker_id)

    def request_cancel(self, job_id: int) -> JobInfo:
        with self.session() as s:
            return jobs.request_cancel(s, job_id)

    def requeue_expired(self) -> int:
        with self.session() as s:
            return jobs.requeue_expired(s)

    def add_token(self, name: str, token_hash: str, *, admin: bool = False) -> TokenInfo:
        with self.session() as s:
            return jobs.add_token(s, name, token_hash, admin=admin)

    def find_token(self, token_hash: str) -> TokenInfo | None:
        with self.session() as s:
            return jobs.find_token(s, token_hash)

    def revoke_token(self, name: str) -> TokenInfo:
        with self.session() as s:
            return jobs.revoke_token(s, name)

    def list_tokens(self) -> list[TokenInfo]:
        with self.session() as s:
            return jobs.list_tokens(s)

"""The service's job queue and bearer tokens. Every function works inside the caller's session (one transaction).

A job goes ``queued`` -> ``running`` (claimed by one worker, which holds a lease) -> ``succeeded``, ``failed`` or
``cancelled``. Claims are safe with many workers on one database: PostgreSQL takes the oldest queued row with
``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite (and other backends) claim with one conditional
``UPDATE ... WHERE id = (oldest queued) AND status = 'queued' RETURNING id``, which SQLite's single writer makes atomic.
A worker renews its lease with `heartbeat_job`; a job whose lease expired goes back to the queue on the next claim
(`requeue_expired`), or fails once it has been started ``max_attempts`` times. Every write is a conditional
``UPDATE`` issued first in its transaction, so SQLite takes its write lock at once instead of upgrading a read lock.

Lease times come from the workers' clocks: keep the machines' clocks synchronised (NTP) and leases much longer than
their skew.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from .errors import DatabaseError, InvalidRecordError, NotFoundError
from .models import JOB_STATUSES, ApiToken, Job, utcnow
from .records import to_json

__all__ = [
    "FINAL_STATUSES",
    "JobInfo",
    "JobStateError",
    "TokenInfo",
    "add_token",
    "claim_job",
    "find_token",
    "finish_job",
    "get_job",
    "heartbeat_job",
    "list_jobs",
    "list_tokens",
    "release_job",
    "request_cancel",
    "requeue_expired",
    "revoke_token",
    "submit_job",
]

FINAL_STATUSES = ("succeeded", "failed", "cancelled")
Lease = Literal["ok", "cancel", "lost"]
_NO_SYNC = {"synchronize_session": False}


class JobStateError(DatabaseError, ValueError):
    """The job is not in a state that allows the operation (e.g. cancelling a finished job)."""


@dataclass(frozen=True)
class JobInfo:
    """A job as stored (see `autoaccel.db.models.Job`)."""

    id: int
    status: str
    model_id: str
    device: str | None
    request: dict[str, Any]
    study_name: str
    progress: dict[str, Any]
    worker_id: str | None
    lease_expires_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
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
    def of(cls, job: Job) -> JobInfo:
        return cls(**{name: getattr(job, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TokenInfo:
    """A stored token (never its secret)."""

    id: int
    name: str
    token_hash: str
    admin: bool
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenInfo:
        return cls(**{name: getattr(token, name) for name in cls.__dataclass_fields__})


# -- jobs -----------------------------------------------------------------------------------------------------------
def submit_job(
    session: Session,
    request: Mapping[str, Any],
    *,
    model_id: str,
    device: str | None = None,
    submitted_by: str | None = None,
    max_attempts: int = 3,
) -> JobInfo:
    """Queues a job; its study is named ``job-<id>-<random>`` (unique even if ids are reused after deletes).

    Args:
        request: What to search, as JSON (model, budget, workload, n_trials, ...); the worker reads it.
        model_id: The model's canonical id (for listing and filtering).
        device: Only workers on this device (``cuda``, ``cuda:1``, ``cpu``) claim it; None: any worker.
        submitted_by: Name of the token that submitted it.
        max_attempts: Runs allowed before a job whose workers keep dying is failed.
    """
    if max_attempts < 1:
        raise InvalidRecordError(f"max_attempts must be >= 1, got {max_attempts}")
    now = utcnow()
    job = Job(
        status="queued",
        model_id=model_id,
        device=device,
        request=to_json(dict(request), "request"),
        study_name=f"job-pending-{uuid.uuid4().hex}",
        progress={},
        attempts=0,
        max_attempts=max_attempts,
        cancel_requested=False,
        submitted_by=submitted_by,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    job.study_name = f"job-{job.id}-{uuid.uuid4().hex[:8]}"
    session.flush()
    return JobInfo.of(job)


def get_job(session: Session, job_id: int) -> JobInfo:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFoundError(f"no search job with id {job_id}")
    return JobInfo.of(job)


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    model_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[JobInfo], int]:
    """Jobs matching the filters, newest first: one page and the total count."""
    if limit < 0 or offset < 0:
        raise InvalidRecordError(f"limit and offset must be >= 0, got {limit} and {offset}")
    if status is not None and status not in JOB_STATUSES:
        raise InvalidRecordError(f"job status must be one of {JOB_STATUSES}, got {status!r}")
    where: list[ColumnElement[bool]] = []
    if status is not None:
        where.append(Job.status == status)
    if model_id is not None:
        where.append(Job.model_id == model_id)
    total = session.scalar(select(func.count()).select_from(Job).where(*where))
    page = select(Job).where(*where).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    return [JobInfo.of(job) for job in session.scalars(page)], int(total or 0)


def requeue_expired(session: Session, *, now: dt.datetime | None = None) -> int:
    """Running jobs whose lease expired go back to the queue; returns how many jobs changed.

    A job already started ``max_attempts`` times fails instead, and one whose cancellation was requested is cancelled.
    Finished trials stay in the job's study, so the next worker continues it.
    """
    now = now or utcnow()
    expired = (Job.status == "running", Job.lease_expires_at < now)
    gone = {"worker_id": None, "lease_expires_at": None}
    changed = session.execute(
        update(Job)
        .where(*expired, Job.cancel_requested.is_(True))
        .values(status="cancelled", finished_at=now, **gone)
        .execution_options(**_NO_SYNC)
    ).rowcount
    changed += session.execute(
        update(Job)
        .where(*expired, Job.attempts >= Job.max_attempts)
        .values(
            status="failed",
            finished_at=now,
            error="its worker stopped renewing the lease on every allowed attempt (max_attempts); "
            "the finished trials are kept in its study",
            **gone,
        )
        .execution_options(**_NO_SYNC)
    ).rowcount
    changed += session.execute(
        update(Job).where(*expired).values(status="queued", **gone).execution_options(**_NO_SYNC)
    ).rowcount
    return changed


def claim_job(
    session: Session,
    worker_id: str,
    *,
    lease_s: float,
    devices: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> JobInfo | None:
    """Claims the oldest queued job for ``worker_id`` (first requeueing expired leases); None when none is queued.

    Args:
        worker_id: Who claims it (host and process, for humans and for the lease checks).
        lease_s: Seconds the claim holds without a `heartbeat_job`.
        devices: The worker's device names (e.g. ``["cuda", "cuda:0"]``); jobs asking for another device are left.
            None takes any job.
    """
    if lease_s <= 0:
        raise InvalidRecordError(f"lease_s must be positive, got {lease_s}")
    now = now or utcnow()
    requeue_expired(session, now=now)
    where: list[ColumnElement[bool]] = [Job.status == "queued"]
    if devices is not None:
        where.append(or_(Job.device.is_(None), Job.device.in_(list(devices))))
    oldest = select(Job.id).where(*where).order_by(Job.created_at, Job.id).limit(1)
    values = {
        "status": "running",
        "worker_id": worker_id,
        "lease_expires_at": now + dt.timedelta(seconds=lease_s),
        "heartbeat_at": now,
        "attempts": Job.attempts + 1,
        "started_at": now,
        "updated_at": now,
    }
    if session.get_bind().dialect.name == "postgresql":
        job_id = session.scalars(oldest.with_for_update(skip_locked=True)).first()
        if job_id is None:
            return None
        session.execute(update(Job).where(Job.id == job_id).values(**values).execution_options(**_NO_SYNC))
    else:
        claim = (
            update(Job)
            .where(Job.id == oldest.scalar_subquery(), Job.status == "queued")
            .values(**values)
            .returning(Job.id)
            .execution_options(**_NO_SYNC)
        )
        job_id = session.scalars(claim).first()
        if job_id is None:
            return None
    return get_job(session, job_id)


def heartbeat_job(
    session: Session,
    job_id: int,
    worker_id: str,
    *,
    lease_s: float,
    progress: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Lease:
    """Renews the lease of a running job (and stores its progress).

    Returns:
        ``"ok"``; ``"cancel"`` when cancellation was requested (stop and `finish_job` as cancelled); ``"lost"`` when
        ``worker_id`` no longer holds the job (its lease expired and the job was requeued or finished): stop.
    """
    now = now or utcnow()
    values: dict[str, Any] = {"lease_expires_at": now + dt.timedelta(seconds=lease_s), "heartbeat_at": now}
    if progress is not None:
        values["progress"] = to_json(dict(progress), "progress")
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
        .values(**values)
        .returning(Job.cancel_requested)
        .execution_options(**_NO_SYNC)
    ).first()
    if row is None:
        return "lost"
    return "cancel" if row[0] else "ok"


def finish_job(
    session: Session,
    job_id: int,
    worker_id: str,
    *,
    status: str,
    recipe_id: int | None = None,
    error: str | None = None,
    progress: Mapping[str, Any] | None = None,
) -> bool:
    """Ends a running job held by ``worker_id``; False when the worker no longer holds it (nothing changes)."""
    if status not in FINAL_STATUSES:
        raise InvalidRecordError(f"a finished job's status must be one of {FINAL_STATUSES}, got {status!r}")
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "lease_expires_at": None,
        "recipe_id": recipe_id,
        "error": error,
    }
    if progress is not None:
        values["progress"] = to_json(dict(progress), "progress")
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
        .values(**values)
        .execution_options(**_NO_SYNC)
    )
    return done.rowcount == 1


def release_job(session: Session, job_id: int, worker_id: str) -> bool:
    """Puts a running job held by ``worker_id`` back in the queue (a worker shutting down); this run is not counted
    as an attempt. False when the worker no longer holds it."""
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == "running")
        .values(status="queued", worker_id=None, lease_expires_at=None, attempts=Job.attempts - 1)
        .execution_options(**_NO_SYNC)
    )
    return done.rowcount == 1


def request_cancel(session: Session, job_id: int) -> JobInfo:
    """Cancels a queued job at once; marks a running one ``cancel_requested`` (its worker stops after the current
    trial and marks it cancelled).

    Raises:
        NotFoundError: No such job.
        JobStateError: The job has already finished.
    """
    now = utcnow()
    queued = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=now)
        .execution_options(**_NO_SYNC)
    ).rowcount
    if not queued:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(cancel_requested=True)
            .execution_options(**_NO_SYNC)
        )
    job = get_job(session, job_id)
    if job.status in FINAL_STATUSES and not queued:
        raise JobStateError(f"search job {job_id} has already finished ({job.status}); there is nothing to cancel")
    return job


# -- tokens ---------------------------------------------------------------------------------------------------------
def add_token(session: Session, name: str, token_hash: str, *, admin: bool = False) -> TokenInfo:
    """Stores a token by the sha256 (hex) of its secret.

    Raises:
        InvalidRecordError: Empty name, a hash that is not 64 hex digits, or the name is taken.
    """
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise InvalidRecordError(f"a token name must be a non-empty string of at most 255 characters, got {name!r}")
    if len(token_hash) != 64 or any(c not in "0123456789abcdef" for c in token_hash):
        raise InvalidRecordError("token_hash must be the sha256 hex digest of the token")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise InvalidRecordError(
            f"a token named {name!r} exists already (revoked names stay taken); choose another name"
        )
    token = ApiToken(name=name, token_hash=token_hash, admin=admin, created_at=utcnow())
    session.add(token)
    session.flush()
    return TokenInfo.of(token)


def find_token(session: Session, token_hash: str) -> TokenInfo | None:
    """The token with this hash (revoked ones too: check ``revoked_at``), or None."""
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).one_or_none()
    return TokenInfo.of(token) if token is not None else None


def revoke_token(session: Session, name: str) -> TokenInfo:
    """Revokes the token called ``name`` (revoking twice keeps the first time).

    Raises:
        NotFoundError: No token has this name.
    """
    session.execute(
        update(ApiToken)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(**_NO_SYNC)
    )
    token = session.scalars(select(ApiToken).where(ApiToken.name == name)).one_or_none()
    if token is None:
        raise NotFoundError(f"no token named {name!r}")
    return TokenInfo.of(token)


def list_tokens(session: Session) -> list[TokenInfo]:
    """All tokens, oldest first."""
    return [TokenInfo.of(t) for t in session.scalars(select(ApiToken).order_by(ApiToken.id))]

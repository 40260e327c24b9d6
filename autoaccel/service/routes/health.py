"""``/v1/health`` (the process is up) and ``/v1/ready`` (the database answers at the right schema)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ... import __version__
from ...db import DatabaseError, current, head_revision
from ..deps import DBDep
from ..errors import error
from ..schemas import ErrorBody, Health, Ready

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Health:
    """Liveness: the service runs (does not touch the database)."""
    return Health(status="ok", version=__version__)


@router.get("/ready", response_model=Ready, responses={503: {"model": ErrorBody}})
def ready(db: DBDep) -> Ready | Response:
    """Readiness: the database answers and its schema is the one this service needs."""
    try:
        revision = current(db.engine)
    except DatabaseError:
        return error(status.HTTP_503_SERVICE_UNAVAILABLE, "the recipe database does not answer")
    head = head_revision()
    if revision != head:
        return error(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the database schema is at {revision!r}, this service needs {head!r}",
            hint="run: autoaccel db upgrade --db URL",
        )
    return Ready(status="ready", database=db.engine.dialect.name, schema_revision=head)

"""``/v1/searches``: submit search jobs, follow their progress, cancel them, list them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse

from ...aliases import canonical_id
from .. import crud
from ..deps import DBDep, WriteToken
from ..schemas import ErrorBody, JobStatus, ModelName, SearchCreate, SearchesPublic, SearchPublic
from ._params import Limit, Offset, RowId

router = APIRouter(prefix="/searches", tags=["searches"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SearchPublic,
    responses={401: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def submit_search(request: Request, db: DBDep, token: WriteToken, search: SearchCreate) -> Response:
    """Queues a search (needs a token). A worker (``autoaccel worker``) claims it; follow it at the returned
    ``Location``."""
    job = crud.submit_search(db, search, submitted_by=token.name)
    body = SearchPublic.of(job).model_dump(mode="json")
    return JSONResponse(body, status.HTTP_201_CREATED, headers={"Location": f"{request.url.path}/{job.id}"})


@router.get("", response_model=SearchesPublic)
def list_searches(
    db: DBDep,
    status: JobStatus | None = None,
    model: Annotated[ModelName | None, Query(description="Hub id or alias.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SearchesPublic:
    """Search jobs, newest first."""
    jobs, total = db.list_jobs(
        status=status, model_id=canonical_id(model) if model else None, limit=limit, offset=offset
    )
    return SearchesPublic(data=[SearchPublic.of(j) for j in jobs], count=total)


@router.get("/{job_id}", responses={404: {"model": ErrorBody}})
def get_search(db: DBDep, job_id: RowId) -> SearchPublic:
    """A search job: its status and progress (trials done, best speedup within the budget, Pareto front)."""
    return SearchPublic.of(db.get_job(job_id))


@router.post(
    "/{job_id}/cancel",
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
def cancel_search(db: DBDep, token: WriteToken, job_id: RowId) -> SearchPublic:
    """Cancels a search (needs a token): a queued one at once, a running one after its current trial. 409 when it
    has finished."""
    return SearchPublic.of(db.request_cancel(job_id))

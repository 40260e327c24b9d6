"""Errors as JSON: one handler per error family, a request-size cap, and never a stack trace in a response.

| error | status |
|---|---|
| invalid request (pydantic), `RecipeError`, `BudgetError`, `WorkloadError`, `InvalidRecordError` | 422 |
| `NotFoundError` | 404 |
| `JobStateError` (e.g. cancelling a finished job) | 409 |
| body over the cap | 413 |
| `DatabaseError` (unreachable, wrong schema) | 503 |
| anything else | 500, ``{"detail": "internal server error"}``; the traceback goes to the log only |
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..db import DatabaseError, InvalidRecordError, NotFoundError, SchemaVersionError
from ..db.jobs import JobStateError
from ..errors import AutoAccelError, RecipeError

logger = logging.getLogger("autoaccel.service")


def error(status_code: int, detail: str, **extra: Any) -> JSONResponse:
    """A JSON error response ``{"detail": ..., **extra}`` (None values left out)."""
    return JSONResponse({"detail": detail, **{k: v for k, v in extra.items() if v is not None}}, status_code)


def _location(loc: Any) -> str:
    return ".".join(str(part) for part in loc)


async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors[:5])
    return error(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid request: {summary}", errors=errors)


async def _recipe_error(_request: Request, exc: RecipeError) -> JSONResponse:
    return error(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid recipe: {exc}", field=exc.field)


async def _bad_input(_request: Request, exc: Exception) -> JSONResponse:
    return error(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


async def _not_found(_request: Request, exc: NotFoundError) -> JSONResponse:
    return error(status.HTTP_404_NOT_FOUND, str(exc))


async def _conflict(_request: Request, exc: JobStateError) -> JSONResponse:
    return error(status.HTTP_409_CONFLICT, str(exc))


async def _schema_version(_request: Request, exc: SchemaVersionError) -> JSONResponse:
    return error(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))


async def _database_error(request: Request, exc: DatabaseError) -> JSONResponse:
    logger.error("database error on %s %s: %s", request.method, request.url.path, exc)
    return error(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "the recipe database is unavailable; try again later",
        hint=type(exc).__name__,
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Registers the handlers above (the most specific class of an error wins)."""
    handlers: list[tuple[type[Exception], Any]] = [
        (RequestValidationError, _invalid_request),
        (RecipeError, _recipe_error),
        (InvalidRecordError, _bad_input),
        (NotFoundError, _not_found),
        (JobStateError, _conflict),
        (SchemaVersionError, _schema_version),
        (DatabaseError, _database_error),
        (AutoAccelError, _bad_input),  # BudgetError, WorkloadError, ...: bad input in a request
        (Exception, _internal_error),
    ]
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with 413 JSON, by ``Content-Length`` and by counting the stream.

    A body is read (at most ``max_bytes``) before the app sees it, so a chunked upload cannot slip past the cap.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await error(status.HTTP_400_BAD_REQUEST, "Content-Length is not a number")(scope, receive, send)
                return
            if length > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"request body is larger than the limit of {self.max_bytes} bytes",
            hint="a recipe is at most 1 MB; send the workload's prompts as a built-in prompt set name",
        )
        await response(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed

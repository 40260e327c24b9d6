"""The app factory: `create_app` builds the FastAPI app; nothing happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from .. import __version__
from ..db import RecipeDB
from .errors import BodySizeLimit, install_error_handlers
from .routes import api_router
from .settings import Settings, get_settings

API_PREFIX = "/v1"
DESCRIPTION = """Recipes for accelerating diffusion pipelines under a quality budget, and the searches that make them.

Reads are open. Writes (publish, delete, submit, cancel) need `Authorization: Bearer <token>`; create tokens with
`autoaccel tokens create NAME` (`--admin` to delete recipes). Errors are JSON: `{"detail": ..., "hint": ...}`.
"""


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings | None = None, *, db: RecipeDB | None = None) -> FastAPI:
    """The service's app.

    Args:
        settings: Default: `get_settings` (the environment).
        db: An open database to serve (the caller closes it); default: open ``settings.db_url`` at startup (creating
            the schema in an empty database) and close it at shutdown.

    Example:
        >>> import uvicorn
        >>> uvicorn.run(create_app(Settings(db_url="sqlite:///recipes.db")), host="127.0.0.1", port=8000)
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = db if db is not None else RecipeDB(settings.db_url)
        try:
            yield
        finally:
            if db is None:
                app.state.db.close()

    app = FastAPI(
        title="AutoAccel recipe service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    if db is not None:  # usable without the lifespan too (e.g. clients that do not run it)
        app.state.db = db
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.include_router(api_router, prefix=API_PREFIX)
    return app

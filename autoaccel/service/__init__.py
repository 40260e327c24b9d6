"""The REST recipe-search service (FastAPI) and its search workers.

``autoaccel serve`` runs `create_app` with uvicorn; ``autoaccel worker`` runs `autoaccel.service.worker.Worker`.
See ``docs/service.md``.

Example:
    >>> from autoaccel.service import Settings, create_app
    >>> app = create_app(Settings(db_url="sqlite:///recipes.db"))
"""

from __future__ import annotations

from .app import API_PREFIX, create_app
from .settings import Settings, get_settings

__all__ = ["API_PREFIX", "Settings", "create_app", "get_settings"]

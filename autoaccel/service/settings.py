"""Settings of the service, from the environment (pydantic-settings); `get_settings` reads them once."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_BODY_BYTES = 1_048_576


class Settings(BaseSettings):
    """The service's settings. Each field reads ``AUTOACCEL_SERVICE_<FIELD>``; the database URL reads
    ``AUTOACCEL_DB_URL``, like the rest of autoaccel.

    Args:
        db_url: The recipe database (default: `autoaccel.db.default_url`, a per-user SQLite file).
        max_body_bytes: Larger request bodies are refused with 413 (a recipe file is at most 1 MB).
        cors_origins: Browser origins allowed to call the API (JSON list); empty: CORS is off.
        docs: Serve the OpenAPI docs at ``/docs`` and ``/redoc`` (the schema is always at ``/openapi.json``).
    """

    model_config = SettingsConfigDict(env_prefix="AUTOACCEL_SERVICE_", extra="ignore", populate_by_name=True)

    db_url: str | None = Field(default=None, validation_alias="AUTOACCEL_DB_URL")
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1024, le=64 * MAX_BODY_BYTES)
    cors_origins: list[str] = Field(default_factory=list)
    docs: bool = True


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment, read on first use."""
    return Settings()

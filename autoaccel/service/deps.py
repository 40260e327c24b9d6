"""Dependencies of the routes, as ``Annotated`` aliases: the database, the settings and the token checks.

Tests replace them with ``app.dependency_overrides[get_db] = ...``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..db import RecipeDB
from ..db.jobs import TokenInfo
from .security import lookup_token
from .settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `autoaccel tokens create NAME`; deleting recipes needs one made with `--admin`.",
)


def get_db(request: Request) -> RecipeDB:
    """The app's `RecipeDB`, opened once by the app's lifespan."""
    return request.app.state.db


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


DBDep = Annotated[RecipeDB, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="autoaccel"' + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge})


def require_token(db: DBDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> TokenInfo:
    """The caller's valid, unrevoked token.

    Raises:
        HTTPException: 401 when the token is missing, unknown or revoked (with a ``WWW-Authenticate`` challenge).
    """
    if credentials is None:
        raise _unauthorized(
            "this endpoint needs a bearer token: send 'Authorization: Bearer <token>' "
            "(create one with `autoaccel tokens create NAME`)"
        )
    token = lookup_token(db, credentials.credentials)
    if token is None:
        raise _unauthorized("invalid token", "invalid_token")
    if token.revoked_at is not None:
        raise _unauthorized(f"token {token.name!r} was revoked on {token.revoked_at:%Y-%m-%d}", "invalid_token")
    return token


WriteToken = Annotated[TokenInfo, Depends(require_token)]


def require_admin(token: WriteToken) -> TokenInfo:
    """The caller's token, which must be an admin token.

    Raises:
        HTTPException: 403 for a valid token without admin rights.
    """
    if not token.admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"token {token.name!r} is not an admin token; this needs one made with "
            "`autoaccel tokens create NAME --admin`",
        )
    return token


AdminToken = Annotated[TokenInfo, Depends(require_admin)]

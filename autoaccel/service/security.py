"""Bearer tokens: made with `secrets`, stored as their sha256, compared in constant time.

A token is ``aa_`` followed by 43 URL-safe characters (256 random bits). Only its sha256 (hex) is stored, so a
leaked database does not leak usable tokens. ``autoaccel tokens create NAME [--admin]`` prints a new token once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from ..db import RecipeDB
from ..db.jobs import TokenInfo

TOKEN_PREFIX = "aa_"
MAX_TOKEN_CHARS = 200


def new_token() -> str:
    """A fresh random token (``aa_`` + 43 URL-safe characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The sha256 (hex) under which ``token`` is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(db: RecipeDB, name: str, *, admin: bool = False) -> tuple[str, TokenInfo]:
    """Creates a token called ``name``; returns ``(token, info)``. The token itself is not stored: show it once.

    Raises:
        InvalidRecordError: The name is empty or taken.
    """
    token = new_token()
    return token, db.add_token(name, hash_token(token), admin=admin)


def lookup_token(db: RecipeDB, token: str) -> TokenInfo | None:
    """The stored token matching ``token`` (possibly revoked), or None."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    digest = hash_token(token)
    info = db.find_token(digest)
    if info is None or not hmac.compare_digest(info.token_hash, digest):
        return None
    return info

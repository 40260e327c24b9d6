"""Database URLs, engines and the one session scope.

The URL is, in order: the ``url`` argument (``--db``), ``AUTOACCEL_DB_URL``, or a SQLite file in the per-user data
directory (``$XDG_DATA_HOME/autoaccel/recipes.db``, by default ``~/.local/share/autoaccel/recipes.db`` on Linux,
``~/Library/Application Support/autoaccel/recipes.db`` on macOS, ``%LOCALAPPDATA%\\autoaccel\\recipes.db`` on
Windows). ``postgresql://`` and ``postgres://`` URLs use psycopg 3 (``pip install 'autoaccel[postgres]'``); a bare file
path means a SQLite file.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from .errors import DatabaseError

ENV_VAR = "AUTOACCEL_DB_URL"
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 10


def user_data_dir() -> Path:
    """The per-user data directory of autoaccel (not created)."""
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg) / "autoaccel"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "autoaccel"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "autoaccel"
    return Path.home() / ".local" / "share" / "autoaccel"


def default_url() -> str:
    """``AUTOACCEL_DB_URL`` if set, else the SQLite file ``<user data dir>/recipes.db``."""
    return os.environ.get(ENV_VAR) or f"sqlite:///{user_data_dir() / 'recipes.db'}"


def normalize_url(url: str | URL | None = None) -> URL:
    """Parses ``url`` (default: `default_url`); ``postgresql://`` becomes ``postgresql+psycopg://``.

    Raises:
        DatabaseError: ``url`` is not a database URL.
    """
    if isinstance(url, URL):
        parsed = url
    else:
        text = (url or default_url()).strip()
        if "://" not in text:
            text = f"sqlite:///{Path(text).expanduser().resolve()}"
        try:
            parsed = make_url(text)
        except (ArgumentError, ValueError):
            raise DatabaseError(
                f"{text!r} is not a database URL; use e.g. sqlite:///path/recipes.db or "
                "postgresql://user:password@host:5432/dbname"
            ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redact_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def engine_for(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """A new engine for ``url`` (see `normalize_url`); creates a SQLite file's directory.

    SQLite connections get WAL journaling, foreign keys and a 30 s busy timeout; PostgreSQL ones a 10 s connect timeout.
    Connecting is lazy: an unreachable server is reported by the first query.

    Raises:
        DatabaseError: Bad URL, its driver is not installed, or a SQLite file's folder cannot be created.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot create the folder {folder} of {redact_url(parsed)}: {e.strerror}") from None
    if backend == "postgresql":
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_S)
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as e:
        hint = " (pip install 'autoaccel[postgres]')" if backend == "postgresql" else ""
        raise DatabaseError(f"no driver for {redact_url(parsed)}: {e}{hint}") from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent), retrying: SQLite answers "database is locked" at once, without waiting
    for ``busy_timeout``, when several processes switch a new file together."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def describe_error(error: SQLAlchemyError, url: str | URL) -> DatabaseError:
    """A `DatabaseError` naming the (redacted) URL and the driver's first message line."""
    orig = getattr(error, "orig", None) or error
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return DatabaseError(f"database error on {redact_url(url)}: {detail}")


@contextmanager
def translate_errors(url: str | URL) -> Iterator[None]:
    """Turns SQLAlchemy errors raised inside into `DatabaseError` (chained)."""
    try:
        yield
    except SQLAlchemyError as e:
        raise describe_error(e, url) from e


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success, rolls back on error and always closes.

    Objects stay readable after commit (``expire_on_commit=False``); relationships are never lazy-loaded.

    Raises:
        DatabaseError: Any SQLAlchemy error (unreachable server, constraint violation, ...), naming the URL.
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except SQLAlchemyError as e:
        _quiet_rollback(session)
        raise describe_error(e, engine.url) from e
    except BaseException:
        _quiet_rollback(session)
        raise
    finally:
        session.close()


def _quiet_rollback(session: Session) -> None:
    try:
        session.rollback()
    except SQLAlchemyError:  # the connection is already gone; the original error is the one to report
        pass

"""Schema migrations, run programmatically (``autoaccel db upgrade [--db URL]`` calls `upgrade`).

The migration scripts ship in the package (``autoaccel/db/migrations``); Alembic records our revision in
``autoaccel_alembic_version``, apart from Optuna's ``alembic_version`` in the same database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import URL

from .engine import engine_for, redact_url, translate_errors
from .errors import DatabaseError, SchemaVersionError
from .models import TABLE_PREFIX, VERSION_TABLE, Base

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "autoaccel db upgrade --db {url}"
_PG_LOCK_ID = 0x6175746F616363  # "autoacc": the advisory lock that serialises our migrations
_LOCK = threading.Lock()  # Alembic's `context` and `op` are module globals: one migration per process at a time


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Only ``autoaccel_*`` tables are ours; Optuna's tables in the same database are left alone."""
    return type_ != "table" or (name or "").startswith(TABLE_PREFIX)


def context_options() -> dict[str, Any]:
    """Options of every Alembic migration context of ours (used by ``migrations/env.py``)."""
    return {
        "target_metadata": Base.metadata,
        "version_table": VERSION_TABLE,
        "include_name": include_name,
        "render_as_batch": True,
        "compare_type": True,
    }


def alembic_config() -> Config:
    """An Alembic config for our migrations (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The revision this version of autoaccel expects.

    Raises:
        DatabaseError: The migrations have more than one head (a packaging error).
    """
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise DatabaseError(f"the autoaccel migrations have {len(heads)} heads {heads}; expected exactly one")
    return heads[0]


@contextmanager
def migration_connection(url: str | URL | Engine | None = None) -> Iterator[Connection]:
    """A connection for Alembic holding the database's migration lock, in one transaction committed on success.

    The lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction advisory lock) makes concurrent first uses of a
    new database wait for each other instead of creating the tables twice. SQLite foreign keys are off meanwhile:
    batch mode rebuilds tables by copy-and-drop, and with foreign keys on the drop could cascade to other tables.
    """
    engine = url if isinstance(url, Engine) else engine_for(url)
    try:
        with translate_errors(engine.url), engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
                conn.commit()
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
            try:
                yield conn
                conn.commit()
            finally:
                if sqlite:  # the connection goes back to the pool: restore the engine's setting
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA foreign_keys = ON")
                    conn.commit()
    finally:
        if engine is not url:
            engine.dispose()


def upgrade(url: str | URL | Engine | None = None, revision: str = "head") -> None:
    """Upgrades the database at ``url`` (default: `autoaccel.db.default_url`) to ``revision``; creates an empty one.

    Raises:
        DatabaseError: The database cannot be reached, or ``revision`` is unknown.
    """
    _run("upgrade", url, revision)


def downgrade(url: str | URL | Engine | None, revision: str) -> None:
    """Downgrades the database at ``url`` to ``revision`` (``base`` drops our tables; Optuna's stay).

    Raises:
        DatabaseError: The database cannot be reached, or ``revision`` is unknown.
    """
    _run("downgrade", url, revision)


def _run(action: str, url: str | URL | Engine | None, revision: str) -> None:
    with _LOCK, migration_connection(url) as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        try:
            getattr(command, action)(config, revision)
        except CommandError as e:
            raise DatabaseError(f"cannot {action} {redact_url(conn.engine.url)} to {revision!r}: {e}") from None


def current(url: str | URL | Engine | None = None) -> str | None:
    """The database's schema revision, or None when it has none (empty, or only Optuna's tables)."""
    engine = url if isinstance(url, Engine) else engine_for(url)
    try:
        with translate_errors(engine.url), engine.connect() as conn:
            return _current(conn)
    finally:
        if engine is not url:
            engine.dispose()


def schema_diff(url: str | URL | Engine | None = None) -> list[Any]:
    """Differences between the database's tables and the models (Alembic autogenerate); empty when they agree."""
    engine = url if isinstance(url, Engine) else engine_for(url)
    try:
        with translate_errors(engine.url), engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts=context_options()), Base.metadata)
    finally:
        if engine is not url:
            engine.dispose()


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def check_schema(engine: Engine, *, create: bool = True) -> str:
    """Checks that the database is at `head_revision`; returns it.

    Args:
        engine: The database.
        create: Create the schema in a database that has none of our tables (Optuna's may be there).

    Raises:
        SchemaVersionError: The schema is older (the message gives the ``autoaccel db upgrade`` command), newer than
            this autoaccel knows, or missing with ``create=False``.
        DatabaseError: The database cannot be reached.
    """
    head = head_revision()
    fix = UPGRADE_COMMAND.format(url=redact_url(engine.url))
    with translate_errors(engine.url), engine.connect() as conn:
        revision = _current(conn)
        ours = [t for t in inspect(conn).get_table_names() if t.startswith(TABLE_PREFIX)] if revision is None else []
    if revision == head:
        return head
    if revision is None:
        if ours:
            raise SchemaVersionError(
                f"{redact_url(engine.url)} has autoaccel tables ({', '.join(sorted(ours))}) but no schema version; "
                "it was not created by `autoaccel db upgrade`. Use another database or drop these tables."
            )
        if not create:
            raise SchemaVersionError(f"{redact_url(engine.url)} has no autoaccel schema; create it with: {fix}")
        upgrade(engine)  # waits for a concurrent creator, then finds the schema at head
        return head
    known = {rev.revision for rev in script_directory().walk_revisions()}
    if revision not in known:
        raise SchemaVersionError(
            f"{redact_url(engine.url)} is at schema revision {revision!r}, unknown to this autoaccel (head {head!r}); "
            "it was written by a newer autoaccel: upgrade the package (pip install -U autoaccel)."
        )
    raise SchemaVersionError(
        f"{redact_url(engine.url)} is at schema revision {revision!r} but this autoaccel needs {head!r}; "
        f"upgrade it with: {fix}"
    )

"""Alembic environment: our tables only (Optuna's share the database), batch mode for SQLite.

Run programmatically by `autoaccel.db.migrate`, which passes an open connection in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from autoaccel.db.migrate import context_options, migration_connection

OPTIONS = context_options()


def run_offline() -> None:
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (conn := context.config.attributes.get("connection")) is not None:
    run_online(conn)
else:
    with migration_connection(context.config.get_main_option("sqlalchemy.url")) as conn:
        run_online(conn)

"""Alembic migrations of the recipe database, run through `autoaccel.db.upgrade` (``autoaccel db upgrade``)."""

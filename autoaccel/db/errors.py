"""Errors of the recipe database; all are `autoaccel.errors.DatabaseError` subclasses."""

from __future__ import annotations

from ..errors import DatabaseError

__all__ = ["DatabaseError", "InvalidRecordError", "NotFoundError", "SchemaVersionError"]


class SchemaVersionError(DatabaseError):
    """The database schema is older (or newer) than this autoaccel; the message gives the command that fixes it."""


class NotFoundError(DatabaseError, LookupError):
    """No row with the requested id or name."""


class InvalidRecordError(DatabaseError, ValueError):
    """A value to store is incomplete or malformed (e.g. a hardware profile without a name)."""

"""Errors raised by AutoAccel. Every error names the offending field or input and how to fix it."""

from __future__ import annotations


class AutoAccelError(Exception):
    """Base class of every AutoAccel error."""


class RecipeError(AutoAccelError, ValueError):
    """A recipe is malformed, names an unknown method, has bad params, or combines methods that cannot be combined.

    ``field`` is the dotted path of the offending field (e.g. ``methods.0.params.threshold``) when known.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class NotApplicableError(AutoAccelError, ValueError):
    """A method cannot be applied to this pipeline (wrong family, missing component, ...)."""


class BudgetError(AutoAccelError, ValueError):
    """A budget string does not parse; ``position`` is the 0-based character offset of the problem."""

    def __init__(self, message: str, *, text: str = "", position: int | None = None) -> None:
        self.text = text
        self.position = position
        if position is not None and text:
            message = f"{message} at position {position}:\n  {text}\n  {' ' * position}^"
        super().__init__(message)


class DatabaseError(AutoAccelError):
    """The recipe database cannot be reached, is at the wrong schema version, or rejected an operation.

    Messages name the database URL with its password hidden and, where there is one, the command that fixes it.
    """

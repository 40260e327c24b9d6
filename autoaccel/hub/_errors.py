"""Errors of the Hub integration. Messages name the repository and say how to fix the problem."""

from __future__ import annotations

from ..errors import AutoAccelError


class HubError(AutoAccelError):
    """The Hub could not be reached, refused a request (token, permissions), or has no such repository or file."""


class BaseModelMismatchError(HubError, ValueError):
    """A recipe from the Hub was made for another model than the one it is being applied to."""

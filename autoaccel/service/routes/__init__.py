"""The ``/v1`` API: one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from . import catalog, health, recipes, searches

api_router = APIRouter()
for module in (recipes, searches, catalog, health):
    api_router.include_router(module.router)

__all__ = ["api_router"]

"""Recipes shipped with the package (``autoaccel/recipes/data/*.json``), validated like any recipe file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from .schema import Recipe

DATA = Path(__file__).parent / "data"
logger = logging.getLogger("autoaccel")


def shipped_recipes(model_id: str | None = None, pipe: Any = None) -> list[Recipe]:
    """Shipped recipes, optionally only those made for ``model_id``, fastest (validated speedup) first.

    With ``pipe``, recipes that cannot apply to it here (e.g. ``compile`` without a C++ compiler) are left out, each
    with an INFO log line saying why.
    """
    recipes = [Recipe.load(p) for p in sorted(DATA.glob("*.json"))]
    if model_id is not None:
        recipes = [r for r in recipes if (r.model_id or "").lower() == model_id.lower()]
    if pipe is not None:
        recipes = [r for r in recipes if _applies(r, pipe)]
    return sorted(recipes, key=lambda r: -_speedup(r))


def _applies(recipe: Recipe, pipe: Any) -> bool:
    try:
        recipe.check(pipe)
        return True
    except RecipeError as e:
        logger.info("skipping a shipped recipe that cannot apply here: %s", e)
        return False


def _speedup(recipe: Recipe) -> float:
    value = (recipe.metrics or {}).get("speedup")
    return float(value) if isinstance(value, (int, float)) else 0.0

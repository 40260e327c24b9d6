"""Recipes shipped with the package (``autoaccel/recipes/data/*.json``), validated like any recipe file."""

from __future__ import annotations

from pathlib import Path

from .schema import Recipe

DATA = Path(__file__).parent / "data"


def shipped_recipes(model_id: str | None = None) -> list[Recipe]:
    """Shipped recipes, optionally only those made for ``model_id``, fastest (validated speedup) first."""
    recipes = [Recipe.load(p) for p in sorted(DATA.glob("*.json"))]
    if model_id is not None:
        recipes = [r for r in recipes if (r.model_id or "").lower() == model_id.lower()]
    return sorted(recipes, key=lambda r: -_speedup(r))


def _speedup(recipe: Recipe) -> float:
    value = (recipe.metrics or {}).get("speedup")
    return float(value) if isinstance(value, (int, float)) else 0.0

"""Recipes: the versioned JSON contract between methods, measurement, search, the database, the Hub and the service."""

from .schema import MAX_RECIPE_BYTES, SCHEMA_VERSION, MethodEntry, Recipe

__all__ = ["MAX_RECIPE_BYTES", "SCHEMA_VERSION", "MethodEntry", "Recipe"]

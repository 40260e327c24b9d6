"""Sharing recipes on the Hugging Face Hub, with huggingface_hub's own client, cache and card format.

A recipe repository is a lightweight model repository holding only ``autoaccel_recipe.json`` (the recipe; the only
file ever read back), a generated ``README.md`` model card (``base_model``, ``library_name: autoaccel``, tags, metrics)
and optionally ``pareto.png``. See docs/hub.md.

Example:
    >>> from autoaccel import Recipe
    >>> recipe.push_to_hub("me/flux-dev-h100-lpips01")                  # or autoaccel.hub.push_recipe(recipe, ...)
    >>> recipe = Recipe.from_pretrained("me/flux-dev-h100-lpips01", expected_base_model="black-forest-labs/FLUX.1-dev")
    >>> from autoaccel.hub import find_recipes
    >>> [r.repo_id for r in find_recipes("black-forest-labs/FLUX.1-dev", "nvidia-h100-80gb-hbm3", "lpips<0.1")]
"""

from __future__ import annotations

from ._card import LIBRARY_NAME, PARETO_FILENAME, RECIPE_FILENAME, RECIPE_TAG, build_card, hardware_key, recipe_tags
from ._cli import cli_pull, cli_push
from ._discovery import HubRecipe, find_recipes, resolve_from_hub
from ._errors import BaseModelMismatchError, HubError
from ._io import CARD_FILENAME, check_base_model, get_api, is_offline, load_recipe, push_recipe
from ._metrics import MetricStats, RecipeMetrics, budget_violations, parse_metrics

__all__ = [
    "CARD_FILENAME",
    "LIBRARY_NAME",
    "PARETO_FILENAME",
    "RECIPE_FILENAME",
    "RECIPE_TAG",
    "BaseModelMismatchError",
    "HubError",
    "HubRecipe",
    "MetricStats",
    "RecipeMetrics",
    "budget_violations",
    "build_card",
    "check_base_model",
    "cli_pull",
    "cli_push",
    "find_recipes",
    "get_api",
    "hardware_key",
    "is_offline",
    "load_recipe",
    "looks_like_repo_id",
    "parse_metrics",
    "push_recipe",
    "recipe_tags",
    "resolve_from_hub",
]


def looks_like_repo_id(value: object) -> bool:
    """Whether ``value`` (e.g. ``recipe=`` of `AutoAccel.from_pretrained`) names a Hub repository rather than a file:
    a ``"namespace/name"`` string that is not an existing path, not JSON text and does not end in ``.json``."""
    import re
    from pathlib import Path

    if not isinstance(value, str) or value.endswith(".json") or Path(value).expanduser().exists():
        return False
    name = r"[A-Za-z0-9][\w.-]{0,95}"
    return re.fullmatch(f"{name}/{name}", value) is not None and ".." not in value

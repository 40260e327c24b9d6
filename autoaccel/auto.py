"""`AutoAccel.from_pretrained`: load a diffusers pipeline and accelerate it with a recipe in one call."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .aliases import resolve
from .errors import AutoAccelError
from .recipes import Recipe

logger = logging.getLogger("autoaccel")


class AutoAccel:
    """Entry point, in the style of diffusers' ``Auto*`` classes. Not instantiated."""

    def __init__(self) -> None:
        raise TypeError("use AutoAccel.from_pretrained(...)")

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        *,
        recipe: Recipe | dict | str | Path | None = None,
        budget: str | None = None,
        **pipeline_kwargs: Any,
    ) -> Any:
        """Load ``model`` with ``DiffusionPipeline.from_pretrained`` and apply a recipe.

        Args:
            model: A Hub id, a local directory, or an alias from `autoaccel.aliases.ALIASES`
                (``"autoaccel/fashion-flux"`` is bundled with the package and loads offline).
            recipe: A `Recipe`, a dict, a JSON string or a path to a recipe JSON file.
            budget: A quality budget such as ``"lpips<0.1"`` (resolved by the recipe search; not in this version).
            **pipeline_kwargs: Passed to ``DiffusionPipeline.from_pretrained`` (``torch_dtype``, ``revision``, ...).

        Returns:
            The pipeline, with ``pipe.autoaccel_recipe`` (the applied `Recipe`, or None) and
            ``pipe.autoaccel_handle`` (call ``.remove()`` to undo the acceleration exactly).

        Raises:
            RecipeError: the recipe is invalid or does not apply to this pipeline (the pipeline is not modified).
            AutoAccelError: the model cannot be loaded, or ``budget`` was given.

        Example:
            >>> pipe = AutoAccel.from_pretrained("autoaccel/fashion-flux", recipe="recipe.json")
            >>> images = pipe("a photo of a sneaker").images
        """
        if budget is not None:
            raise AutoAccelError(
                "budget= needs the budgeted recipe search, which this version of autoaccel does not have yet; "
                "pass recipe=<path | Recipe | dict> instead"
            )
        parsed = Recipe.coerce(recipe) if recipe is not None else None  # validate before the (slow) load
        model_id, source = resolve(model)
        pipe = _load(source, pipeline_kwargs)
        pipe.autoaccel_recipe = None
        pipe.autoaccel_handle = None
        if parsed is not None:
            if parsed.model_id is not None and parsed.model_id != model_id:
                logger.warning("recipe was made for %s, applying it to %s", parsed.model_id, model_id)
            pipe.autoaccel_handle = parsed.apply(pipe)
            logger.info("applied recipe %s to %s", [m.name for m in parsed.methods], model_id)
        return pipe


def _load(source: str | Path, kwargs: dict[str, Any]) -> Any:
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError) as e:
        raise AutoAccelError(f"cannot load a diffusers pipeline from {source}: {e}") from e

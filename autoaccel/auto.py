"""`AutoAccel.from_pretrained`: load a diffusers pipeline and accelerate it with a recipe in one call."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .aliases import resolve
from .budget import Budget
from .errors import AutoAccelError, DatabaseError
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
        budget: str | Budget | None = None,
        search: bool = False,
        device: str | None = None,
        db: Any = None,
        hub: bool = True,
        allow_base_model_mismatch: bool = False,
        search_kwargs: dict[str, Any] | None = None,
        **pipeline_kwargs: Any,
    ) -> Any:
        """Load ``model`` with ``DiffusionPipeline.from_pretrained`` and apply a recipe.

        With ``budget=``, the recipe is resolved in this order: the local recipe database's fastest recipe that meets
        the budget for this model and hardware (`autoaccel.db.RecipeDB.best_recipe`, with its same-GPU and
        same-architecture fallbacks), then recipes published on the Hub (`autoaccel.hub.resolve_from_hub`), then the
        recipes shipped with the package, then, with ``search=True``, a new search on this machine. Which recipe was
        chosen and why is logged on the ``autoaccel`` logger.

        Args:
            model: A Hub id, a local directory, or an alias from `autoaccel.aliases.ALIASES`
                (``"autoaccel/fashion-flux"`` is bundled with the package and loads offline).
            recipe: A `Recipe`, a dict, a JSON string, a path to a recipe JSON file, or a Hub recipe repository id
                (``"user/repo"``).
            budget: A quality budget such as ``"lpips<0.1"`` (see `autoaccel.Budget`); ignored when ``recipe`` is set.
            search: Run a search when no stored recipe meets the budget.
            device: Move the pipeline there before resolving (recipes are hardware-specific).
            db: Recipe database URL or `RecipeDB` (default: ``AUTOACCEL_DB_URL`` or the per-user SQLite file).
            hub: Look for published recipes on the Hub.
            allow_base_model_mismatch: Apply a Hub recipe made for another model.
            search_kwargs: Passed to `autoaccel.search.search` (``n_trials``, ``workload``, ...).
            **pipeline_kwargs: Passed to ``DiffusionPipeline.from_pretrained`` (``torch_dtype``, ``revision``, ...).

        Returns:
            The pipeline, with ``pipe.autoaccel_recipe`` (the applied `Recipe`, or None) and
            ``pipe.autoaccel_handle`` (call ``.remove()`` to undo the acceleration exactly).

        Raises:
            RecipeError: the recipe is invalid or does not apply to this pipeline (the pipeline is not modified).
            BudgetError: the budget does not parse.
            AutoAccelError: the model cannot be loaded, or no recipe meets the budget.

        Example:
            >>> pipe = AutoAccel.from_pretrained("autoaccel/fashion-flux", budget="lpips<0.1")
            >>> images = pipe("a photo of a sneaker").images
        """
        model_id, source = resolve(model)
        parsed = None  # validate before the (slow) load
        if recipe is not None:
            parsed = _coerce(recipe, model_id, allow_base_model_mismatch)
        elif budget is not None:
            budget = Budget.parse(budget)
        pipe = _load(model_id, source, pipeline_kwargs)
        if device is not None:
            pipe.to(device)
        pipe.autoaccel_recipe = None
        pipe.autoaccel_handle = None
        if parsed is None and budget is not None:
            parsed = resolve_recipe(
                pipe,
                model_id,
                budget,
                revision=pipeline_kwargs.get("revision"),
                db=db,
                hub=hub,
                search=search,
                search_kwargs=search_kwargs,
            )
        if parsed is not None:
            if parsed.model_id is not None and parsed.model_id.lower() != model_id.lower():
                logger.warning("recipe was made for %s, applying it to %s", parsed.model_id, model_id)
            pipe.autoaccel_handle = parsed.apply(pipe)
            logger.info("applied recipe %s to %s", [m.name for m in parsed.methods], model_id)
        return pipe


def resolve_recipe(
    pipe: Any,
    model_id: str,
    budget: Budget,
    *,
    revision: str | None = None,
    db: Any = None,
    hub: bool = True,
    search: bool = False,
    search_kwargs: dict[str, Any] | None = None,
) -> Recipe:
    """The recipe `AutoAccel.from_pretrained` applies for ``budget`` (see its docstring for the order)."""
    from .hardware import HardwareProfile
    from .profiling import execution_device

    hardware = HardwareProfile.current(execution_device(pipe))
    where = f"{model_id} on {hardware.key()}"
    looked = []
    try:
        from .db import RecipeDB

        recipe_db = db if isinstance(db, RecipeDB) else RecipeDB(db)
        looked.append(f"the recipe database ({recipe_db.url})")
        match = recipe_db.best_recipe(model_id, revision, hardware, None, str(budget))
        if match is not None:
            logger.info(
                "using recipe %d from the database (%s match, %.2fx) for %s under %s",
                match.recipe_id,
                match.fallback,
                match.speedup or 0.0,
                where,
                budget,
            )
            return match.recipe
    except DatabaseError as e:
        logger.warning("recipe database unavailable, skipping it: %s", e)
    if hub:
        from .hub import resolve_from_hub

        looked.append("the Hugging Face Hub")
        found = resolve_from_hub(model_id, budget, hardware, revision=revision)
        if found is not None:
            logger.info("using a recipe from the Hub for %s under %s", where, budget)
            return found
    from .hub import budget_violations
    from .recipes.shipped import shipped_recipes

    looked.append("the recipes shipped with autoaccel")
    for shipped in shipped_recipes(model_id, pipe):
        if not budget_violations(budget, shipped.metrics):
            measured_on = (shipped.hardware or {}).get("name", "unknown hardware")
            logger.info("using a shipped recipe for %s under %s (measured on %s)", where, budget, measured_on)
            return shipped
    if search:
        from .search import search as run_search

        logger.info("no stored recipe for %s under %s; searching", where, budget)
        result = run_search(pipe, budget, model_id=model_id, revision=revision, db=db, **(search_kwargs or {}))
        if result.recipe is None:
            raise AutoAccelError(
                f"the search found no recipe that meets {budget} for {where}: "
                + ("; ".join(result.rejected) or "no trial met the budget")
            )
        return result.recipe
    raise AutoAccelError(
        f"no recipe meets {budget} for {where}; looked in {', '.join(looked)}. Run "
        f'`autoaccel search {model_id} --budget "{budget}"` or pass search=True'
    )


def _coerce(recipe: Any, model_id: str, allow_mismatch: bool) -> Recipe:
    from .hub import load_recipe, looks_like_repo_id

    if isinstance(recipe, str) and looks_like_repo_id(recipe) and not Path(recipe).exists():
        return load_recipe(recipe, expected_base_model=model_id, allow_base_model_mismatch=allow_mismatch)
    return Recipe.coerce(recipe)


def _load(model_id: str, source: str | Path, kwargs: dict[str, Any]) -> Any:
    from diffusers import DiffusionPipeline

    from .reference import REFERENCE_MODEL_ID, load_reference_pipeline

    try:
        if model_id == REFERENCE_MODEL_ID:  # its pipeline class sets the native size and step count as defaults
            return load_reference_pipeline(**kwargs)
        return DiffusionPipeline.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError) as e:
        raise AutoAccelError(f"cannot load a diffusers pipeline from {source}: {e}") from e

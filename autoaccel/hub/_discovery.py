"""Finding published recipes: `find_recipes` (Hub model search by tag and base model) and `resolve_from_hub`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..budget import Budget
from ..errors import RecipeError
from ..hardware import HardwareProfile
from ..recipes import Recipe
from ._card import LIBRARY_NAME, arch_class, hardware_key
from ._errors import HubError
from ._io import get_api, hub_errors, is_offline, load_recipe
from ._metrics import RecipeMetrics, budget_violations, parse_metrics

if TYPE_CHECKING:
    from huggingface_hub import HfApi

__all__ = ["HubRecipe", "find_recipes", "resolve_from_hub"]

logger = logging.getLogger("autoaccel.hub")


@dataclass(frozen=True)
class HubRecipe:
    """A recipe published on the Hub, as `find_recipes` returns it.

    Args:
        repo_id: Its repository.
        recipe: The validated recipe (read from ``autoaccel_recipe.json`` only).
        hardware: Key of the device it was measured on (see `hardware_key`), or None.
        arch_class: Architecture class of that device (``"hopper"``), or None.
        metrics: Its validated numbers (`parse_metrics` of ``recipe.metrics``).
        meets_budget: Whether the metrics meet the budget asked for; None when no budget was given.
        violations: Why the budget is not met (one line per clause), empty otherwise.
    """

    repo_id: str
    recipe: Recipe
    hardware: str | None
    arch_class: str | None
    metrics: RecipeMetrics
    meets_budget: bool | None = None
    violations: tuple[str, ...] = ()

    @property
    def speedup(self) -> float | None:
        return self.metrics.speedup


def find_recipes(
    base_model: str,
    hardware: HardwareProfile | Mapping[str, Any] | str | None = None,
    budget: str | Budget | None = None,
    *,
    limit: int = 50,
    include_failing: bool = False,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    api: HfApi | None = None,
) -> list[HubRecipe]:
    """Published recipes for ``base_model``, fastest first.

    Lists the Hub models tagged ``autoaccel`` with ``base_model:<base_model>`` (and the hardware tag when
    ``hardware`` is given), then downloads and validates each one's recipe JSON: the recipe, not the card, is the
    truth. Repositories whose recipe is invalid or made for another model are skipped with a warning.

    Args:
        base_model: Hub id of the accelerated model, e.g. ``"black-forest-labs/FLUX.1-dev"``.
        hardware: Only recipes measured on this device: a key (``"nvidia-h100-80gb-hbm3"``), a `HardwareProfile`
            or a hardware dict.
        budget: Keep the recipes whose metrics meet it (see `budget_violations`), e.g. ``"p90(lpips)<0.1"``.
        limit: At most this many repositories are listed.
        include_failing: Also return recipes that miss the budget (``meets_budget=False``), after those that meet it.
        token: For private repositories.
        cache_dir: huggingface_hub cache folder for the downloaded recipes.
        api: The `HfApi` to use (its endpoint and token).

    Raises:
        HubError: Offline, or the Hub cannot be reached or refused the search.
        BudgetError: ``budget`` does not parse.
    """
    parsed_budget = Budget.parse(budget) if budget is not None else None
    if is_offline():
        raise HubError(f"cannot search recipes for {base_model}: offline mode is on (HF_HUB_OFFLINE/AUTOACCEL_OFFLINE)")
    api = get_api(api)
    wanted = hardware_key(hardware)
    filters = [LIBRARY_NAME, f"base_model:{base_model}"] + ([wanted] if wanted else [])
    with hub_errors(f"search recipes for {base_model}", None, api.endpoint):
        repo_ids = [info.id for info in api.list_models(filter=filters, limit=limit, token=token)]
    found = []
    for repo_id in repo_ids:
        try:
            recipe = load_recipe(repo_id, expected_base_model=base_model, token=token, cache_dir=cache_dir, api=api)
        except (RecipeError, HubError) as e:
            logger.warning("skipping %s: %s", repo_id, e)
            continue
        key = hardware_key(recipe.hardware)
        if wanted and key != wanted:
            logger.warning("skipping %s: tagged %s but its recipe was measured on %s", repo_id, wanted, key)
            continue
        metrics = parse_metrics(recipe.metrics)
        violations = budget_violations(parsed_budget, metrics) if parsed_budget is not None else ()
        meets = None if parsed_budget is None else not violations
        if meets is False and not include_failing:
            continue
        found.append(HubRecipe(repo_id, recipe, key, arch_class(recipe.hardware), metrics, meets, violations))
    return sorted(found, key=lambda r: (r.meets_budget is False, -(r.speedup or 0.0), r.repo_id))


def resolve_from_hub(
    model_id: str,
    budget: str | Budget | None = None,
    hardware: HardwareProfile | Mapping[str, Any] | str | None = None,
    *,
    revision: str | None = None,
    limit: int = 50,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    api: HfApi | None = None,
) -> Recipe | None:
    """The fastest published recipe for ``model_id`` on this hardware that meets ``budget``, or None.

    For `AutoAccel.from_pretrained` (after the local database, before the shipped recipes). Hardware is matched on
    the device key first, then on the architecture class (a recipe from an H100 PCIe serves an H100 SXM, with a
    warning). Returns None, never raises for Hub trouble: offline, unreachable or refusing Hub is logged and skipped.

    Args:
        model_id: Hub id of the model.
        budget: Quality budget the recipe must meet; None accepts any recipe.
        hardware: This machine (`HardwareProfile`, hardware dict or device key); default `HardwareProfile.current()`.
        revision: Only recipes made for this model revision (recipes that do not pin one are accepted).
        limit / token / cache_dir / api: As for `find_recipes`.

    Raises:
        BudgetError: ``budget`` does not parse.
    """
    if is_offline():
        logger.debug("offline: not searching the Hub for %s recipes", model_id)
        return None
    if hardware is None:
        hardware = HardwareProfile.current()
    key, arch = hardware_key(hardware), None if isinstance(hardware, str) else arch_class(hardware)
    try:
        found = find_recipes(model_id, budget=budget, limit=limit, token=token, cache_dir=cache_dir, api=api)
    except HubError as e:
        logger.warning("not using Hub recipes for %s: %s", model_id, e)
        return None
    found = [r for r in found if revision is None or r.recipe.revision in (None, revision)]
    for r in found:
        if key is not None and r.hardware == key:
            logger.info("using Hub recipe %s (measured on %s)", r.repo_id, key)
            return r.recipe
    for r in found:
        if arch is not None and r.arch_class == arch:
            logger.warning(
                "no Hub recipe for %s measured on %s; using %s, measured on %s (same %s architecture): validate it on "
                "this machine before relying on its speedup",
                model_id,
                key,
                r.repo_id,
                r.hardware,
                arch,
            )
            return r.recipe
    return None

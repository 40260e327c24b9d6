"""What ``autoaccel push`` and ``autoaccel pull`` do. They return the text to print and raise only `AutoAccelError`s
(`HubError`, `RecipeError`) with a one-line message, so the CLI prints it and exits 1 without a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..errors import AutoAccelError
from ..recipes import Recipe
from ._errors import HubError
from ._io import load_recipe, push_recipe

if TYPE_CHECKING:
    from huggingface_hub import HfApi

__all__ = ["cli_pull", "cli_push"]

T = TypeVar("T")


def cli_push(
    recipe_path: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    pareto_plot: str | Path | None = None,
    api: HfApi | None = None,
) -> str:
    """``autoaccel push RECIPE REPO_ID``: validate the recipe file, publish it, return a one-line summary.

    Raises:
        RecipeError: The file is not a valid recipe.
        HubError: Missing token, no write access, unreachable Hub, ... (see `push_recipe`).
    """
    recipe = Recipe.load(recipe_path)
    commit = _guard(
        lambda: push_recipe(
            recipe, repo_id, token=token, private=private, revision=revision, pareto_plot=pareto_plot, api=api
        ),
        f"push to {repo_id}",
    )
    return f"pushed {recipe_path} to {commit.repo_url} (commit {commit.oid[:12]})"


def cli_pull(
    repo_id: str,
    output: str | Path | None = None,
    *,
    revision: str | None = None,
    expected_base_model: str | None = None,
    allow_base_model_mismatch: bool = False,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    api: HfApi | None = None,
) -> str:
    """``autoaccel pull REPO_ID [-o FILE]``: download and validate a recipe.

    Returns:
        The recipe JSON when ``output`` is None (so ``autoaccel pull user/repo > recipe.json`` works), else a
        one-line summary after saving the recipe to ``output``.

    Raises:
        RecipeError: The repository's recipe is invalid.
        HubError: No such repository or recipe file, the Hub cannot be reached and nothing is cached, the recipe is
            for another model than ``expected_base_model``, or ``output`` cannot be written.
    """
    recipe = _guard(
        lambda: load_recipe(
            repo_id,
            revision,
            expected_base_model=expected_base_model,
            allow_base_model_mismatch=allow_base_model_mismatch,
            token=token,
            cache_dir=cache_dir,
            api=api,
        ),
        f"pull {repo_id}",
    )
    if output is None:
        return recipe.to_json()
    try:
        path = recipe.save(output)
    except OSError as e:
        raise HubError(f"cannot write the recipe to {output}: {e.strerror}") from None
    methods = ", ".join(m.name for m in recipe.methods) or "no methods"
    return f"saved recipe {repo_id} ({methods}; for {recipe.model_id or 'an unnamed model'}) to {path}"


def _guard(call: Callable[[], T], action: str) -> T:
    """Run ``call``; anything but an `AutoAccelError` becomes a `HubError` (the CLI never shows a traceback)."""
    try:
        return call()
    except AutoAccelError:
        raise
    except Exception as e:  # last line of defence for the CLI: unexpected client errors get a clear message
        raise HubError(f"cannot {action}: {type(e).__name__}: {e}") from e

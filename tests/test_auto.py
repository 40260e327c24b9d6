"""One-call loading: AutoAccel.from_pretrained with a recipe, aliases and clear errors."""

from __future__ import annotations

import pytest
import torch

from autoaccel import AutoAccel, Recipe
from autoaccel.aliases import ALIASES, canonical_id
from autoaccel.errors import AutoAccelError, RecipeError
from autoaccel.testing import default_call_kwargs, tiny_pipeline

RECIPE = {"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": 0.5, "warmup_steps": 0}}]}


@pytest.fixture(scope="module")
def saved_flux(tmp_path_factory):
    path = tmp_path_factory.mktemp("flux")
    tiny_pipeline("flux").save_pretrained(path)
    return path


def test_loads_and_applies_a_recipe(saved_flux):
    pipe = AutoAccel.from_pretrained(saved_flux, recipe=RECIPE)
    assert pipe.autoaccel_recipe == Recipe.from_dict(RECIPE)
    fast = pipe(**default_call_kwargs("flux", steps=8)).images
    assert pipe.autoaccel_handle.handles[0].stats["skipped_blocks"] > 0
    pipe.autoaccel_handle.remove()
    assert pipe.autoaccel_recipe is None

    plain = AutoAccel.from_pretrained(str(saved_flux))
    assert plain.autoaccel_recipe is None and plain.autoaccel_handle is None
    base = plain(**default_call_kwargs("flux", steps=8)).images
    assert torch.equal(pipe(**default_call_kwargs("flux", steps=8)).images, base)
    assert not torch.equal(fast, base)


def test_recipe_from_a_file(saved_flux, tmp_path):
    path = Recipe.from_dict(RECIPE).save(tmp_path / "recipe.json")
    pipe = AutoAccel.from_pretrained(saved_flux, recipe=path)
    assert pipe.autoaccel_recipe.methods[0].name == "block_cache"


def test_budget_is_a_clear_error_for_now(saved_flux):
    with pytest.raises(AutoAccelError, match="recipe="):
        AutoAccel.from_pretrained(saved_flux, budget="lpips<0.1")


def test_bad_recipe_fails_before_loading():
    with pytest.raises(RecipeError, match="unknown method"):
        AutoAccel.from_pretrained("/nonexistent/model", recipe={"schema_version": 1, "methods": [{"name": "x"}]})


def test_recipe_that_does_not_apply(saved_flux):
    with pytest.raises(RecipeError, match="deep_cache"):
        AutoAccel.from_pretrained(saved_flux, recipe={"schema_version": 1, "methods": [{"name": "deep_cache"}]})


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(AutoAccelError, match="cannot load"):
        AutoAccel.from_pretrained(tmp_path / "empty-dir-that-is-not-a-pipeline")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AutoAccelError, match="cannot load"):
        AutoAccel.from_pretrained(tmp_path / "empty")


def test_aliases():
    assert canonical_id("flux-dev") == "black-forest-labs/FLUX.1-dev"
    assert canonical_id("FLUX-DEV") == ALIASES["flux-dev"]
    assert canonical_id("someone/model") == "someone/model"
    with pytest.raises(TypeError):
        AutoAccel()

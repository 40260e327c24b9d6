"""One-call loading: AutoAccel.from_pretrained with a recipe, aliases and clear errors."""

from __future__ import annotations

import pytest
import torch

from autoaccel import AutoAccel, Recipe
from autoaccel.aliases import ALIASES, canonical_id
from autoaccel.errors import AutoAccelError, BudgetError, RecipeError
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


def test_budget_without_any_stored_recipe_explains_how_to_search(saved_flux, tmp_path):
    with pytest.raises(AutoAccelError, match="autoaccel search") as info:
        AutoAccel.from_pretrained(saved_flux, budget="lpips<0.1", db=f"sqlite:///{tmp_path / 'r.db'}", hub=False)
    assert "recipe database" in str(info.value) and "shipped" in str(info.value)
    with pytest.raises(BudgetError):
        AutoAccel.from_pretrained(saved_flux, budget="lpips>>0.1")


def test_budget_resolves_the_fastest_stored_recipe_that_meets_it(saved_flux, tmp_path, caplog):
    from autoaccel.db import RecipeDB
    from autoaccel.hardware import HardwareProfile

    db = RecipeDB(f"sqlite:///{tmp_path / 'r.db'}")
    model_id = str(saved_flux)
    hardware = HardwareProfile.current("cpu")
    for threshold, speedup, lpips in ((0.05, 1.3, 0.02), (0.5, 2.0, 0.3), (0.2, 1.6, 0.06)):
        recipe = Recipe.from_dict(
            {
                "schema_version": 1,
                "model_id": model_id,
                "methods": [{"name": "block_cache", "params": {"threshold": threshold}}],
            }
        )
        db.add_recipe(
            recipe,
            hardware=hardware,
            budget="lpips<1",
            speedup=speedup,
            metrics={"lpips": {"mean": lpips, "values": [lpips, lpips]}},
        )
    with caplog.at_level("INFO", logger="autoaccel"):
        pipe = AutoAccel.from_pretrained(saved_flux, budget="lpips<0.1", db=db, hub=False)
    assert pipe.autoaccel_recipe.configs()[0][1].threshold == 0.2  # 2.0x breaks the budget; 1.6x is the fastest
    assert "from the database" in caplog.text
    pipe = AutoAccel.from_pretrained(saved_flux, budget="lpips<0.03", db=db, hub=False)
    assert pipe.autoaccel_recipe.configs()[0][1].threshold == 0.05


def test_budget_with_search_runs_one(saved_flux, tmp_path):
    from tests._search_worker import WORKLOAD

    pipe = AutoAccel.from_pretrained(
        saved_flux,
        budget="lpips<0.05",
        search=True,
        hub=False,
        db=f"sqlite:///{tmp_path / 'r.db'}",
        search_kwargs={
            "workload": WORKLOAD,
            "n_trials": 4,
            "include": ["steps"],
            "repeats": 1,
            "validation_repeats": 2,
            "cache_dir": tmp_path / "cache",
        },
    )
    assert pipe.autoaccel_recipe.methods[0].name == "steps"


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


def test_shipped_recipes_that_cannot_apply_here_are_skipped(tmp_path, monkeypatch, caplog):
    import json

    from autoaccel.methods import compile as compile_method
    from autoaccel.recipes import shipped

    base = json.loads(next(shipped.DATA.glob("fashion-flux-*.json")).read_text())
    fast = {**base, "methods": [{"name": "steps", "params": {"num_inference_steps": 3}}, {"name": "compile"}]}
    fast["metrics"] = {**base["metrics"], "speedup": 100.0}
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    (tmp_path / "plain.json").write_text(json.dumps(base))
    monkeypatch.setattr(shipped, "DATA", tmp_path)

    caplog.set_level("INFO", logger="autoaccel")
    pipe = AutoAccel.from_pretrained("autoaccel/fashion-flux", budget="lpips<0.05", db=f"sqlite:///{tmp_path}/r.db")
    assert [m.name for m in pipe.autoaccel_recipe.methods] == ["steps", "compile"]  # the fastest, where it applies
    pipe.autoaccel_handle.remove()

    monkeypatch.setattr(compile_method, "_has_cpp_compiler", lambda: False)
    with pytest.raises(RecipeError, match="C\\+\\+ compiler") as info:
        Recipe.from_dict(fast).check(pipe)
    assert info.value.field == "methods" and str(info.value).count("compile:") == 1  # names the method
    pipe = AutoAccel.from_pretrained("autoaccel/fashion-flux", budget="lpips<0.05", db=f"sqlite:///{tmp_path}/r.db")
    assert pipe.autoaccel_recipe == Recipe.from_dict(base)
    assert "skipping a shipped recipe that cannot apply here" in caplog.text

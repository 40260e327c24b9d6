"""Recipe schema: round trips, and a corpus of malformed or hostile recipes that must all be refused cleanly."""

from __future__ import annotations

import json

import pytest
import torch

from autoaccel.errors import RecipeError
from autoaccel.recipes import MAX_RECIPE_BYTES, Recipe

from ._pipes import assert_pristine, pipe_for, run

MINIMAL = {"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": 0.1}}]}
FULL = {
    "schema_version": 1,
    "methods": [
        {"name": "steps", "params": {"num_inference_steps": 20}},
        {"name": "block_cache", "params": {"threshold": 0.08, "fn_blocks": 1, "bn_blocks": 0}},
        {"name": "cfg_truncation", "params": {"after_fraction": 0.7}},
    ],
    "model_id": "black-forest-labs/FLUX.1-dev",
    "revision": "main",
    "pipeline_class": "FluxPipeline",
    "dtype": "bfloat16",
    "workload": {"height": 1024, "width": 1024, "num_inference_steps": 28, "guidance_scale": 3.5},
    "budget": "lpips<0.1",
    "metrics": {"speedup": 1.8, "lpips": {"mean": 0.05, "ci95": [0.04, 0.06]}},
    "hardware": {"name": "NVIDIA H100 80GB HBM3", "torch": "2.13.0"},
    "provenance": {"study": "flux-h100", "trials": 64},
}


def test_minimal_recipe_is_complete():
    recipe = Recipe.from_dict(MINIMAL)
    assert recipe.methods[0].name == "block_cache"
    assert recipe.configs()[0][1].threshold == 0.1
    assert recipe.configs()[0][1].fn_blocks == 1  # defaults filled from the method's config


@pytest.mark.parametrize("data", [MINIMAL, FULL])
def test_json_round_trip(data, tmp_path):
    recipe = Recipe.from_dict(data)
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert recipe.to_dict() == data
    path = recipe.save(tmp_path / "r.json")
    assert Recipe.load(path) == recipe
    assert Recipe.coerce(str(path)) == Recipe.coerce(data) == Recipe.coerce(recipe.to_json()) == recipe


def _deep(n: int) -> str:
    return '{"schema_version": 1, "methods": [], "workload": {"x": ' + "[" * n + "]" * n + "}}"


# (recipe as JSON text or object, substring the error must contain)
HOSTILE = [
    ("[]", "JSON object"),
    ("not json", "not valid JSON"),
    ({"methods": []}, "schema_version"),
    ({"schema_version": 2, "methods": []}, "unsupported schema version 2"),
    ({"schema_version": "1", "methods": []}, "unsupported schema version '1'"),
    ({"schema_version": True, "methods": []}, "schema_version"),
    ({"schema_version": 1}, "methods"),
    ({"schema_version": 1, "methods": {"name": "steps"}}, "methods"),
    ({"schema_version": 1, "methods": [{"params": {}}]}, "methods.0.name"),
    ({"schema_version": 1, "methods": [{"name": "turbo"}]}, "unknown method 'turbo'"),
    ({"schema_version": 1, "methods": [{"name": "../../etc/passwd"}]}, "unknown method"),
    ({"schema_version": 1, "methods": [{"name": "block_cache", "params": {"foo": 1}}]}, "methods.0.params.foo"),
    ({"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": 5.0}}]}, "threshold"),
    ({"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": -0.1}}]}, "threshold"),
    ({"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": "0.1"}}]}, "threshold"),
    ({"schema_version": 1, "methods": [{"name": "block_cache", "params": {"fn_blocks": 1.5}}]}, "fn_blocks"),
    ({"schema_version": 1, "methods": [{"name": "block_cache", "params": {"fn_blocks": True}}]}, "fn_blocks"),
    ({"schema_version": 1, "methods": [{"name": "block_cache", "params": [1, 2]}]}, "methods.0.params"),
    ({"schema_version": 1, "methods": [{"name": "steps"}, {"name": "steps"}]}, "twice"),
    ({"schema_version": 1, "methods": [{"name": "block_cache"}, {"name": "taylorseer"}]}, "feature_cache"),
    ({"schema_version": 1, "methods": [], "exec": "import os; os.system('x')"}, "exec"),
    ({"schema_version": 1, "methods": [{"name": "steps", "params": {"__reduce__": "os.system"}}]}, "__reduce__"),
    ({"schema_version": 1, "methods": [{"name": "steps", "params": {"num_inference_steps": 0}}]}, "num_inference"),
    (
        {"schema_version": 1, "methods": [{"name": "pab", "params": {"window_low_t": 900.0, "window_high_t": 100.0}}]},
        "window_low_t",
    ),
    ({"schema_version": 1, "methods": [{"name": "quantize", "params": {"keep": ["(["]}}]}, "regular expression"),
    ({"schema_version": 1, "methods": [{"name": "quantize", "params": {"scheme": "int2"}}]}, "scheme"),
    ({"schema_version": 1, "methods": [{"name": "magcache", "params": {"mag_ratios": ["a", "b"]}}]}, "mag_ratios"),
    ({"schema_version": 1, "methods": [{"name": "steps"}] * 33}, "methods"),
    ('{"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": NaN}}]}', "NaN"),
    ('{"schema_version": 1, "methods": [], "metrics": {"x": Infinity}}', "Infinity"),
    (_deep(100_000), "not valid JSON"),
    ('{"schema_version": 1, "methods": [], "provenance": {"pad": "' + "x" * MAX_RECIPE_BYTES + '"}}', "limit"),
    ({"schema_version": 1, "methods": [{"name": "", "params": {}}]}, "methods.0.name"),
]


@pytest.mark.parametrize(("data", "message"), HOSTILE, ids=[f"hostile-{i}" for i in range(len(HOSTILE))])
def test_hostile_recipe_is_refused_with_a_clear_message(data, message):
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(RecipeError) as info:
        Recipe.from_json(text)
    assert message in str(info.value)
    if not isinstance(data, str):
        with pytest.raises(RecipeError):
            Recipe.from_dict(data)


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(" " * (MAX_RECIPE_BYTES + 1))
    with pytest.raises(RecipeError, match="limit"):
        Recipe.load(path)
    with pytest.raises(RecipeError, match="cannot read"):
        Recipe.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("kind", "methods", "message"),
    [
        ("flux", [{"name": "deep_cache"}], "deep_cache"),
        ("sd", [{"name": "steps", "params": {"num_inference_steps": 2}}, {"name": "block_cache"}], "block_cache"),
        ("flux", [{"name": "block_cache", "params": {"fn_blocks": 4, "bn_blocks": 1}}], "middle block"),
        ("flux", [{"name": "magcache"}], "mag_ratios"),
    ],
)
def test_valid_recipe_that_does_not_apply_leaves_the_pipeline_untouched(kind, methods, message):
    pipe = pipe_for(kind)
    scheduler = pipe.scheduler
    base, _ = run(pipe, kind)
    recipe = Recipe.from_dict({"schema_version": 1, "methods": methods})
    with pytest.raises(RecipeError, match=message):
        recipe.apply(pipe)
    assert_pristine(pipe, scheduler)
    assert torch.equal(run(pipe, kind)[0], base)


def test_apply_sets_and_remove_clears_the_recipe_attribute():
    pipe = pipe_for("flux")
    recipe = Recipe.from_dict(MINIMAL)
    handle = recipe.apply(pipe)
    assert pipe.autoaccel_recipe is recipe
    handle.remove()
    handle.remove()  # idempotent
    assert pipe.autoaccel_recipe is None

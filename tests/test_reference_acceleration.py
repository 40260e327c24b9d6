"""Acceleration on the trained reference model: caches skip real work and keep LPIPS under 0.1; a short search on it
finds and stores a recipe that meets its budget."""

from __future__ import annotations

import functools

import optuna
import pytest

import autoaccel.methods as M
from autoaccel.budget import Budget
from autoaccel.db import RecipeDB
from autoaccel.profiling import profile
from autoaccel.reference import load_reference_pipeline
from autoaccel.search import search
from autoaccel.workload import Workload

PROMPTS = ["a photo of a sneaker", "a photo of a trouser", "a photo of a bag", "a photo of a dress"]


@functools.cache
def reference():
    return load_reference_pipeline()


@pytest.mark.parametrize(
    ("name", "params", "counter"),
    [
        ("block_cache", {"threshold": 0.12, "warmup_steps": 2, "max_consecutive_cached": 3}, "cached_steps"),
        ("taylorseer", {"interval": 3, "order": 1, "warmup_steps": 3}, None),
        ("cfg_truncation", {"after_fraction": 0.6}, "skipped_uncond_calls"),
    ],
)
def test_moderate_caching_skips_steps_and_keeps_lpips_under_0_1(name, params, counter, tmp_path):
    pipe = reference()
    call = {"true_cfg_scale": 2.0, "negative_prompt": ""} if name == "cfg_truncation" else {}
    workload = Workload.for_pipeline(pipe, prompts=PROMPTS, call_kwargs=call)
    recipe = {"schema_version": 1, "methods": [{"name": name, "params": params}]}
    m = profile(
        pipe, recipe, workload, metrics=("lpips", "psnr"), repeats=1, warmup=0, progress=False, cache_dir=tmp_path
    )
    assert m.flops_ratio < 0.9, f"{name} skipped too little work: FLOPs ratio {m.flops_ratio}"
    if counter:
        assert m.method_stats[name][counter] > 0
    assert max(m.per_image["lpips"]) < 0.1
    assert Budget.parse("max(lpips)<0.1").check(m)


def test_short_search_on_the_reference_model_finds_and_stores_a_recipe(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pipe = reference()
    db = RecipeDB(f"sqlite:///{tmp_path / 'r.db'}")
    workload = Workload.for_pipeline(pipe, prompts=PROMPTS)
    result = search(
        pipe,
        "lpips<0.1",
        workload=workload,
        model_id="autoaccel/fashion-flux",
        n_trials=5,
        include=["block_cache", "steps"],
        db=db,
        study_name="ref",
        repeats=2,
        validation_repeats=2,
        cache_dir=tmp_path / "cache",
    )
    assert result.recipe is not None, result.rejected
    assert Budget.parse("lpips<0.1").check(result.measurement)
    assert result.measurement.flops_ratio < 1
    assert db.get_recipe(result.recipe_id) == result.recipe
    assert {m.name for m in result.recipe.methods} <= {"block_cache", "steps"}
    assert M.available()  # registry intact after the search


def test_unipc_at_four_steps_is_closer_to_the_full_schedule_than_euler(tmp_path):
    """The multistep solver's gain on the trained model (docs/benchmarks.md: the fewer-steps and hand-combined rows)."""
    pipe = reference()
    workload = Workload.for_pipeline(pipe, prompts=PROMPTS)
    lpips = {}
    for solver in (None, "unipc"):
        recipe = {
            "schema_version": 1,
            "methods": [{"name": "steps", "params": {"num_inference_steps": 4, "solver": solver}}],
        }
        m = profile(pipe, recipe, workload, metrics=("lpips",), repeats=1, warmup=0, progress=False, cache_dir=tmp_path)
        assert m.flops_ratio == pytest.approx(4 / 28)  # the same model calls either way
        lpips[solver] = sum(m.per_image["lpips"]) / len(PROMPTS)
    assert lpips["unipc"] < 0.7 * lpips[None], lpips

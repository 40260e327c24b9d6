"""The budgeted search: space, pruning rules, a short search end to end, resume, failures, scale-out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import autoaccel.methods as M
from autoaccel.budget import Budget
from autoaccel.db import RecipeDB
from autoaccel.errors import RecipeError
from autoaccel.search import build_space, clearly_over, search, split_workload, trials_to_fraction
from autoaccel.testing import tiny_pipeline

from ._pipes import pipe_for
from ._postgres import postgres_server, postgres_url  # noqa: F401
from ._search_worker import WORKLOAD

REPO = Path(__file__).resolve().parents[1]
QUIET = ("quant_attention", "sparse_attention", "attention_backend", "compile")


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_space_comes_from_the_registry_and_what_applies():
    space = build_space(pipe_for("flux"), workload_steps=8)
    searchable = {m for ms in space.groups.values() for m in ms}
    assert {"block_cache", "taylorseer", "pab", "steps", "cfg_truncation"} <= searchable
    assert "deep_cache" in space.excluded and "magcache" in space.excluded  # sd only / needs calibration
    assert set(space.groups["feature_cache"]) >= {"block_cache", "taylorseer"}  # one cache at a time
    steps = next(k for k in space.knobs["steps"] if k.name == "num_inference_steps")
    assert steps.high == 7  # fewer steps than the workload's
    quant = next(k for k in space.knobs["quantize"] if k.name == "scheme")
    assert "fp8_weight_only" not in quant.choices  # no capable GPU here


def test_space_can_be_restricted_and_extended():
    space = build_space(
        pipe_for("flux"),
        include=["block_cache", "steps"],
        exclude=["steps"],
        ranges={"block_cache.threshold": (0.02, 0.06)},
    )
    assert space.groups == {"feature_cache": ["block_cache"]}
    threshold = next(k for k in space.knobs["block_cache"] if k.name == "threshold")
    assert (threshold.low, threshold.high) == (0.02, 0.06)
    with pytest.raises(RecipeError, match="unknown method"):
        build_space(pipe_for("flux"), include=["turbo"])
    with pytest.raises(RecipeError, match="unknown knob"):
        build_space(pipe_for("flux"), ranges={"block_cache.speed": (1, 2)})


def test_define_by_run_suggests_knobs_only_for_chosen_methods():
    space = build_space(pipe_for("flux"), workload_steps=8)
    study = optuna.create_study()
    for _ in range(20):
        trial = study.ask()
        methods = space.suggest(trial)
        chosen = {name for name, _ in methods}
        for key in trial.params:
            if not key.startswith("group."):
                assert key.split(".")[0] in chosen
        groups = [M.get(n).group for n in chosen]
        assert len(groups) == len(set(groups))
        study.tell(trial, 1.0)


def test_clearly_over_uses_a_confidence_interval():
    budget = Budget.parse("lpips<0.1")
    assert clearly_over(budget, {"lpips": [0.30, 0.32, 0.31]}) is not None
    assert clearly_over(budget, {"lpips": [0.02, 0.30]}) is None  # too uncertain to prune on 2 items
    assert clearly_over(budget, {"lpips": [0.05, 0.06]}) is None
    assert clearly_over(Budget.parse("max(lpips)<0.1"), {"lpips": [0.05, 0.2]}) is not None
    assert clearly_over(Budget.parse("psnr>30"), {"psnr": [10.0, 11.0, 10.5]}) is not None


def test_split_workload_holds_out_prompts_and_seeds():
    search_wl, validation = split_workload(WORKLOAD.model_copy(update={"seeds": [0, 1]}))
    assert search_wl.prompts == WORKLOAD.prompts[:3] and search_wl.seeds == [0]
    assert validation.prompts == WORKLOAD.prompts
    assert not set(validation.seeds) & set(search_wl.seeds)


def test_short_search_finds_validates_and_stores_a_recipe(tmp_path):
    pipe = tiny_pipeline("flux")
    db = RecipeDB(f"sqlite:///{tmp_path / 'r.db'}")
    result = search(
        pipe,
        "lpips<0.05",
        workload=WORKLOAD,
        model_id="tiny/flux",
        n_trials=8,
        db=db,
        study_name="tiny",
        exclude=QUIET,
        repeats=2,
        validation_repeats=2,
        cache_dir=tmp_path / "c",
    )
    assert result.recipe is not None, result.rejected
    assert result.measurement.workload.seeds != WORKLOAD.seeds[:1]  # validated on fresh seeds
    assert Budget.parse("lpips<0.05").check(result.measurement)
    assert result.recipe.budget == "lpips<0.05" and result.recipe.metrics["speedup"] > 1
    assert result.recipe.provenance["study"] == "tiny"
    assert result.trials_to_95 is not None and 1 <= result.trials_to_95 <= 8
    stored = db.get_recipe(result.recipe_id)
    assert stored == result.recipe
    trials = db.list_trials(db.get_study("tiny").id)
    assert len(trials) == 8 and {t.state for t in trials} <= {"complete", "pruned", "failed"}
    match = db.best_recipe("tiny/flux", None, result.measurement.hardware, None, "lpips<0.05")
    assert match is not None and match.recipe_id == result.recipe_id and match.fallback == "exact"
    assert result.pareto and all(t.values[0] >= 1.0 or not t.user_attrs["recipe"]["methods"] for t in result.pareto)


def test_search_resumes_a_study(tmp_path):
    pipe = pipe_for("flux")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    kwargs = dict(
        workload=WORKLOAD,
        model_id="tiny/flux",
        db=url,
        study_name="resume",
        exclude=QUIET,
        repeats=1,
        validate=False,
        cache_dir=tmp_path / "c",
    )
    search(pipe, "lpips<0.05", n_trials=3, **kwargs)
    result = search(pipe, "lpips<0.05", n_trials=2, **kwargs)
    finished = [t for t in result.study.trials if t.state.is_finished()]
    assert len(finished) == 5  # warm-start trials still waiting in the queue run on the next resume
    assert sorted(t.number for t in finished) == list(range(5))


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    spec = M.get("block_cache")

    def boom(pipe, config):
        raise torch_oom()

    monkeypatch.setitem(M._REGISTRY, "block_cache", type(spec)(**{**spec.__dict__, "apply": boom}))
    result = search(
        pipe_for("flux"),
        "lpips<0.05",
        workload=WORKLOAD,
        model_id="tiny/flux",
        n_trials=4,
        include=["block_cache", "steps"],
        repeats=1,
        validate=False,
        cache_dir=tmp_path,
    )
    states = [t.state for t in result.study.trials]
    assert optuna.trial.TrialState.FAIL in states  # the enqueued block_cache presets crashed
    assert optuna.trial.TrialState.COMPLETE in states


def torch_oom() -> Exception:
    import torch

    return torch.OutOfMemoryError("CUDA out of memory (simulated)")


def test_a_budget_no_trial_meets_gives_no_recipe(tmp_path):
    result = search(
        pipe_for("flux"),
        "lpips<0.0000001",
        workload=WORKLOAD,
        model_id="tiny/flux",
        n_trials=3,
        include=["steps"],
        repeats=1,
        cache_dir=tmp_path,
    )
    assert result.recipe is None


def test_trials_to_fraction():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for speed in (1.0, 1.5, 1.96, 2.0):
        trial = study.ask()
        trial.set_user_attr("constraints", [-1.0])
        study.tell(trial, [speed, 0.0])
    assert trials_to_fraction(study) == 3


@pytest.fixture(scope="module")
def saved_tiny_flux(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-flux")
    tiny_pipeline("flux").save_pretrained(path)
    return path


def _worker(url: str, study: str, trials: int, pipe_dir: Path, slow: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests._search_worker", url, study, str(trials), str(pipe_dir), str(slow)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.postgres
def test_two_workers_share_one_study_on_postgres(postgres_url, saved_tiny_flux):  # noqa: F811
    RecipeDB(postgres_url)  # schema created once, before the workers race on the study
    workers = [_worker(postgres_url, "shared", 3, saved_tiny_flux) for _ in range(2)]
    for w in workers:
        out, _ = w.communicate(timeout=300)
        assert w.returncode == 0, out
    study = optuna.load_study(study_name="shared", storage=RecipeDB(postgres_url).optuna_storage())
    assert len(study.trials) == 6
    assert sorted(t.number for t in study.trials) == list(range(6))
    db = RecipeDB(postgres_url)
    assert len(db.list_trials(db.get_study("shared").id)) == 6


@pytest.mark.postgres
def test_killed_worker_keeps_finished_trials_and_its_trial_is_retried(postgres_url, saved_tiny_flux):  # noqa: F811
    RecipeDB(postgres_url)
    storage = RecipeDB(postgres_url).optuna_storage()
    worker = _worker(postgres_url, "killed", 50, saved_tiny_flux, slow=0.05)
    deadline = time.monotonic() + 240
    finished = []
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name="killed", storage=storage).trials
        except KeyError:
            continue
        finished = [t for t in trials if t.state.is_finished()]
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        if len(finished) >= 2 and running:
            break
    assert len(finished) >= 2, "the worker finished no trial in time"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    time.sleep(4)  # past the grace period: the dead worker's trial no longer heartbeats
    resumed = _worker(postgres_url, "killed", 1, saved_tiny_flux)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    trials = optuna.load_study(study_name="killed", storage=storage).trials
    by_number = {t.number: t for t in trials}
    for t in finished:  # nothing finished was lost
        assert by_number[t.number].state == t.state
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed, "the killed worker's running trial was not marked failed"
    assert any(t.system_attrs.get("failed_trial") == failed[0].number for t in trials)  # and was retried


def test_workload_no_larger_than_the_pruning_subset(tmp_path):
    small = WORKLOAD.model_copy(update={"prompts": WORKLOAD.prompts[:2]})  # search split keeps 2: all used to prune
    result = search(
        pipe_for("flux"),
        "lpips<0.05",
        workload=small,
        model_id="tiny/flux",
        n_trials=2,
        include=["steps"],
        repeats=1,
        validate=False,
        warm_start=False,
        cache_dir=tmp_path,
    )
    assert all(t.state != optuna.trial.TrialState.FAIL for t in result.study.trials)


def test_a_method_that_never_acts_is_pruned(tmp_path):
    from autoaccel.profiling import baseline_outputs
    from autoaccel.recipes import Recipe
    from autoaccel.search import Objective
    from autoaccel.search.objective import Baseline

    pipe = pipe_for("flux")
    space = build_space(pipe, include=["steps", "cfg_truncation"], workload_steps=8)
    ref = baseline_outputs(pipe, WORKLOAD, cache_dir=tmp_path)
    objective = Objective(
        pipe,
        space,
        Budget.parse("lpips<0.5"),
        WORKLOAD,
        Baseline(ref.images, [ref.flops_per_image] * len(ref.images)),
        metrics=("lpips",),
        device=ref.images.device,
        repeats=1,
    )
    # No true CFG in this workload: the truncation never fires, so the pair is only "fewer steps" plus overhead.
    recipe = Recipe.from_dict(
        {
            "schema_version": 1,
            "methods": [{"name": "steps", "params": {"num_inference_steps": 4}}, {"name": "cfg_truncation"}],
        }
    )
    with pytest.raises(optuna.TrialPruned, match="inactive: cfg_truncation"):
        objective.evaluate(recipe)
    alone = objective.evaluate(
        Recipe.from_dict({"schema_version": 1, "methods": [{"name": "steps", "params": {"num_inference_steps": 4}}]})
    )
    assert alone.flops_ratio == 0.5


def test_stored_recipes_of_similar_models_are_tried_first(tmp_path):
    from autoaccel.hardware import HardwareProfile
    from autoaccel.recipes import Recipe

    pipe = pipe_for("flux")
    db = RecipeDB(f"sqlite:///{tmp_path / 'r.db'}")
    stored = [  # (model, pipeline class, methods, stored lpips)
        ("tiny/other-sd", "StableDiffusionPipeline", [("steps", {"num_inference_steps": 2})], 0.01),
        ("tiny/other-flux", type(pipe).__name__, [("steps", {"num_inference_steps": 3})], 0.01),
        ("tiny/flux", type(pipe).__name__, [("block_cache", {"threshold": 0.31})], 0.5),  # same model, over budget
    ]
    for model, cls, methods, lpips in stored:
        recipe = Recipe.from_dict(
            {
                "schema_version": 1,
                "model_id": model,
                "pipeline_class": cls,
                "methods": [{"name": n, "params": p} for n, p in methods],
            }
        )
        metrics = {"lpips": {"mean": lpips, "values": [lpips]}}
        db.add_recipe(recipe, hardware=HardwareProfile.current("cpu"), budget="lpips<1", speedup=2.0, metrics=metrics)
    result = search(
        pipe,
        "lpips<0.05",
        workload=WORKLOAD,
        model_id="tiny/flux",
        n_trials=2,
        db=db,
        include=["block_cache", "steps"],
        repeats=1,
        validate=False,
        cache_dir=tmp_path / "c",
    )
    first = [t.user_attrs["recipe"]["methods"] for t in result.study.trials[:2]]
    assert first[0] == [{"name": "block_cache", "params": {**_defaults("block_cache"), "threshold": 0.31}}]
    assert first[1][0]["name"] == "steps" and first[1][0]["params"]["num_inference_steps"] == 3  # not the SD one


def _defaults(name: str) -> dict:
    return M.get(name).config().model_dump()

"""`search`: find the fastest recipe that meets a quality budget on this machine, validate it, and store it."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from .. import __version__
from ..budget import Budget
from ..errors import AutoAccelError
from ..methods import magcache
from ..methods._pipeline import denoiser
from ..profiling import Measurement, baseline_outputs, execution_device, profile, quality
from ..recipes import Recipe
from ..workload import Workload
from .objective import Baseline, Objective
from .presets import applicable_presets, stored_presets
from .space import build_space

logger = logging.getLogger("autoaccel")


class SearchError(AutoAccelError):
    """The search cannot run or found no recipe that meets the budget."""


@dataclass
class SearchResult:
    """What a search produced. ``recipe`` is None when no trial met the budget after validation."""

    study: optuna.Study
    budget: Budget
    recipe: Recipe | None = None
    measurement: Measurement | None = None
    recipe_id: int | None = None
    trials_to_95: int | None = None
    rejected: list[str] = field(default_factory=list)  # why validated candidates failed

    @property
    def pareto(self) -> list[optuna.trial.FrozenTrial]:
        """Feasible, non-dominated trials (speedup vs the budget's first metric)."""
        return sorted(self.study.best_trials, key=lambda t: -t.values[0])


def split_workload(
    workload: Workload, *, holdout: float = 0.25, seed_offset: int = 10_000
) -> tuple[Workload, Workload]:
    """(search workload, validation workload).

    The search uses the first ``1 - holdout`` of the prompts (or labels) with the first seed only; validation uses
    every prompt, including the held-out ones, with fresh seeds (``seed + seed_offset``) never seen in the search.
    """
    conditions = workload.prompts or workload.class_labels
    update: dict[str, Any] = {"seeds": workload.seeds[:1]}
    if conditions is not None and len(conditions) > 1:
        keep = max(1, math.ceil(len(conditions) * (1 - holdout)))
        update["prompts" if workload.prompts is not None else "class_labels"] = list(conditions[:keep])
    search = workload.model_copy(update=update)
    validation = workload.model_copy(update={"seeds": [s + seed_offset for s in workload.seeds]})
    return search, validation


def _create_study(name: str | None, storage: Any, directions: list[str], sampler: optuna.samplers.BaseSampler):
    try:
        return optuna.create_study(
            study_name=name, storage=storage, directions=directions, sampler=sampler, load_if_exists=True
        )
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it between our check and insert
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def _sampler(seed: int | None, n_trials: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            group=True,  # conditional spaces: model each combination of chosen methods separately
            n_startup_trials=max(3, min(10, n_trials // 3)),
        )


def trials_to_fraction(study: optuna.Study, fraction: float = 0.95) -> int | None:
    """Trials (counting all states) the search needed until its best feasible speedup reached ``fraction`` of the
    final best."""
    best, history = 0.0, []
    for t in sorted(study.trials, key=lambda t: t.number):
        if t.state == optuna.trial.TrialState.COMPLETE and all(c <= 0 for c in t.user_attrs.get("constraints", [1])):
            best = max(best, t.values[0])
        history.append(best)
    if not history or history[-1] <= 0:
        return None
    return next(i + 1 for i, b in enumerate(history) if b >= fraction * history[-1])


def search(
    pipe: Any,
    budget: str | Budget,
    *,
    workload: Workload | None = None,
    model_id: str | None = None,
    revision: str | None = None,
    n_trials: int = 30,
    timeout: float | None = None,
    db: Any = None,
    study_name: str | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    ranges: dict[str, Any] | None = None,
    metrics: Sequence[str] | None = None,
    seed: int | None = 0,
    repeats: int = 3,
    prune_items: int = 2,
    timing_items: int = 1,
    validate: bool = True,
    validation_repeats: int = 5,
    warm_start: bool = True,
    cache_dir: Any = None,
    heartbeat_interval: int = 30,
    grace_period: int = 90,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> SearchResult:
    """Search recipes for ``pipe`` under ``budget``; validate and store the fastest one that meets it.

    Args:
        pipe: The pipeline, unaccelerated.
        budget: A quality budget, e.g. ``"lpips<0.1"``; its first clause's metric is the second objective.
        workload: What to generate (default `Workload.for_pipeline`); split by `split_workload`.
        model_id / revision: The model's identity (default ``pipe.name_or_path``) for the cache and the database.
        n_trials / timeout: Stop after this many trials (of this process) or seconds.
        db: A `RecipeDB` (or URL) that stores the Optuna study, the trials and the recipe; None keeps the study in
            memory and stores nothing.
        study_name: Resume or join this study (several processes may share one study on PostgreSQL).
        include / exclude / ranges: Restrict or extend the space (see `build_space`).
        metrics: Metrics to record (default: the budget's metrics plus psnr).
        seed: Sampler seed.
        repeats: Timed generations per variant for each trial's speedup.
        prune_items / timing_items: Items used for early pruning / for timing.
        validate: Re-measure the best candidates on the validation workload before accepting one.
        heartbeat_interval / grace_period: With a database, running trials heartbeat this often (seconds); a trial
            whose worker stopped heartbeating for ``grace_period`` is marked failed and retried (up to twice).

    Returns:
        A `SearchResult`; ``result.recipe`` is the validated winner or None.
    """
    budget = Budget.parse(budget)
    model_id = model_id or str(getattr(pipe, "name_or_path", "") or "") or None
    workload = workload or Workload.for_pipeline(pipe)
    workload.check(pipe)
    search_wl, validation_wl = split_workload(workload)
    metric_names = tuple(dict.fromkeys([*budget.metrics, *(metrics or ("psnr",))]))
    device = execution_device(pipe)
    steps = workload.num_inference_steps or _default_steps(pipe)
    probe = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    quality(probe, probe, metric_names)  # fail now (missing weights, offline) rather than in every trial

    fixed: dict[str, dict[str, Any]] = {}
    if "magcache" not in exclude and (include is None or "magcache" in include) and steps:
        try:
            first = search_wl.pipeline_kwargs(search_wl.items()[:1], device=device)
            fixed["magcache"] = {"mag_ratios": magcache.calibrate(pipe, **{"num_inference_steps": steps, **first})}
        except AutoAccelError as e:
            logger.info("magcache not calibrated: %s", e)
    space = build_space(pipe, include=include, exclude=exclude, ranges=ranges, fixed=fixed, workload_steps=steps)
    if not space.groups:
        raise SearchError(f"no method applies to {type(pipe).__name__}: {space.excluded}")

    reference = baseline_outputs(
        pipe, search_wl, device=device, cache_dir=cache_dir, model_id=model_id, revision=revision
    )
    baseline = Baseline(reference.images, [reference.flops_per_image or 0.0] * len(reference.images))
    objective = Objective(
        pipe,
        space,
        budget,
        search_wl,
        baseline,
        metrics=metric_names,
        device=device,
        prune_items=prune_items,
        timing_items=timing_items,
        repeats=repeats,
    )

    recipe_db = _open_db(db)
    storage = _storage(recipe_db, heartbeat_interval, grace_period)
    study = _create_study(study_name, storage, objective.directions, _sampler(seed, n_trials))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["speedup", f"{objective.primary.agg}({objective.primary.metric})"])
    study.set_user_attr("budget", str(budget))
    study.set_user_attr("model_id", model_id)
    db_study = None
    if recipe_db is not None:
        db_study = recipe_db.create_or_get_study(
            study.study_name,
            model_id=model_id or "unknown",
            revision=revision,
            hardware=_hardware(device),
            workload=workload,
            budget=str(budget),
            optuna_study_name=study.study_name,
        )
    if warm_start and not study.trials:
        stored = []
        if recipe_db is not None:
            arch = _hardware(device).arch_class
            stored = stored_presets(recipe_db, model_id, type(pipe).__name__, budget, arch)
        for preset in [*stored, *applicable_presets(space.groups, steps)]:
            with contextlib.suppress(Exception):
                study.enqueue_trial(space.params_of(preset), skip_if_exists=True)

    callbacks = [_mirror(recipe_db, db_study)] if recipe_db is not None else []
    if on_trial is not None:
        callbacks.append(on_trial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            objective, n_trials=n_trials, timeout=timeout, catch=(Exception,), callbacks=callbacks, gc_after_trial=False
        )

    result = SearchResult(study=study, budget=budget, trials_to_95=trials_to_fraction(study))
    if validate:
        _validate(result, pipe, validation_wl, metric_names, model_id, revision, validation_repeats, cache_dir)
    if result.recipe is not None and recipe_db is not None:
        m = result.measurement
        result.recipe_id = recipe_db.add_recipe(
            result.recipe,
            hardware=m.hardware,
            workload=validation_wl,
            budget=str(budget),
            metrics={k: {**v, "values": m.per_image[k]} for k, v in m.recipe_metrics()["quality"].items()},
            speedup=m.speedup,
            validated=True,
            study=study.study_name,
        )
    return result


def _validate(
    result: SearchResult,
    pipe: Any,
    workload: Workload,
    metric_names: tuple[str, ...],
    model_id: str | None,
    revision: str | None,
    repeats: int,
    cache_dir: Any,
    candidates: int = 3,
) -> None:
    feasible = [
        t
        for t in result.study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and all(c <= 0 for c in t.user_attrs.get("constraints", [1]))
        and t.user_attrs.get("recipe")
    ]
    feasible = [t for t in feasible if t.user_attrs["recipe"]["methods"]]  # the baseline itself is no recipe
    for trial in sorted(feasible, key=lambda t: -t.values[0])[:candidates]:
        recipe = Recipe.from_dict(trial.user_attrs["recipe"])
        m = profile(
            pipe,
            recipe,
            workload,
            metrics=metric_names,
            repeats=repeats,
            model_id=model_id,
            revision=revision,
            progress=False,
            cache_dir=cache_dir,
        )
        if not result.budget.check(m) or m.speedup <= 1.0:
            why = "; ".join(str(v) for v in result.budget.violations(m)) or f"speedup {m.speedup:.2f}x <= 1"
            result.rejected.append(f"trial {trial.number}: {why}")
            continue
        result.measurement = m
        result.recipe = recipe.model_copy(
            update={
                "model_id": model_id,
                "revision": revision,
                "pipeline_class": type(pipe).__name__,
                "dtype": str(denoiser(pipe).dtype).removeprefix("torch."),
                "workload": workload.to_dict(),
                "budget": str(result.budget),
                "metrics": m.recipe_metrics(),
                "hardware": m.hardware.model_dump(mode="json"),
                "provenance": {
                    "study": result.study.study_name,
                    "trial": trial.number,
                    "trials": len(result.study.trials),
                    "sampler": "TPESampler(multivariate, constraints)",
                    "autoaccel": __version__,
                    "created": dt.datetime.now(dt.timezone.utc).isoformat(),
                },
            }
        )
        return


def _default_steps(pipe: Any) -> int | None:
    """The step count of a plain ``pipe(prompt)`` call: the first ``num_inference_steps`` default along the MRO
    (subclasses that forward ``*args, **kwargs`` inherit their parent's default)."""
    import inspect

    for cls in type(pipe).__mro__:
        call = cls.__dict__.get("__call__")
        param = inspect.signature(call).parameters.get("num_inference_steps") if call is not None else None
        if param is not None and isinstance(param.default, int):
            return param.default
    return None


def _hardware(device: torch.device) -> Any:
    from ..hardware import HardwareProfile

    return HardwareProfile.current(device)


def _open_db(db: Any) -> Any:
    if db is None:
        return None
    from ..db import RecipeDB

    return db if isinstance(db, RecipeDB) else RecipeDB(db)


def _storage(recipe_db: Any, heartbeat_interval: int, grace_period: int) -> Any:
    if recipe_db is None:
        return None
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return recipe_db.optuna_storage(
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
        )


def _mirror(recipe_db: Any, db_study: Any) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """An Optuna callback copying each finished trial into the autoaccel tables."""
    states = {
        optuna.trial.TrialState.COMPLETE: "complete",
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
    }

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        attrs = trial.user_attrs
        metrics = {
            "per_image": attrs.get("per_image"),
            "constraints": attrs.get("constraints"),
            "flops_ratio": attrs.get("flops_ratio"),
            "speedup_ci": attrs.get("speedup_ci"),
            "pruned_because": attrs.get("pruned_because"),
            "stats": attrs.get("stats"),
        }
        recipe_db.record_trial(
            db_study.id,
            trial.number,
            params=attrs.get("recipe") or dict(trial.params),
            state=states.get(trial.state, "failed"),
            optuna_trial_id=trial._trial_id,
            metrics={k: v for k, v in metrics.items() if v is not None},
            speedup=trial.values[0] if trial.values else None,
            error=attrs.get("pruned_because") or trial.system_attrs.get("fail_reason"),
        )

    return callback

"""One trial of the search: build a recipe from the suggested params and score it in stages, cheapest first.

Stages (each can end the trial early, so trials that cannot win cost little):

1. *Inert check.* The first search item is generated under a denoiser FLOP counter. A recipe that saves no denoiser
   FLOPs and has no `flop_neutral` method (quantization, attention kernels, compilation) is pruned before any
   timing: it cannot be faster.
2. *Early quality.* The first ``prune_items`` items are compared with the cached baseline. For every budget clause on
   the mean, if the 95% t-interval of the mean lies entirely on the wrong side of the bound, the trial is pruned
   ("clearly over budget"); for ``max``/``min`` clauses, a violation on the subset is final. Other aggregates are
   never pruned early.
3. *Full search-set quality*, giving the per-image values the budget constraint is computed from.
4. *Timing*: baseline and candidate generations of the timing items, interleaved (ABBA), ``repeats`` each; the
   speedup is the ratio of the medians, measured in this process.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from ..budget import Budget
from ..errors import RecipeError
from ..methods import get as get_method
from ..profiling import generate, generate_counted, mean_interval, quality, speedup_interval, time_variants
from ..recipes import Recipe
from ..workload import Workload, WorkloadItem
from .space import SearchSpace

FINITE = 1e6  # constraint values are clamped to +-FINITE (Optuna stores them as floats)


@dataclass
class Baseline:
    """Unaccelerated outputs and denoiser FLOPs of the search items, computed once per search."""

    outputs: torch.Tensor
    flops: list[float]


@dataclass
class TrialOutcome:
    speedup: float
    speedup_ci: tuple[float, float]
    flops_ratio: float
    per_image: dict[str, list[float]]
    constraints: list[float]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(c <= 0 for c in self.constraints)


def clearly_over(budget: Budget, per_image: dict[str, list[float]]) -> str | None:
    """Why the subset already shows the budget cannot be met at 95% confidence, or None (see module doc)."""
    for clause in budget.clauses:
        values = per_image.get(clause.metric, [])
        if not values:
            continue
        lower_is_better = clause.op in ("<", "<=")
        if clause.agg == "mean" and len(values) >= 2:
            _, low, high = mean_interval(values)
            bound_side = low if lower_is_better else high
            if math.isfinite(bound_side) and clause.margin(bound_side) > 0:
                return f"{clause} fails at 95% confidence on {len(values)} items (interval [{low:.4g}, {high:.4g}])"
        elif clause.agg in ("max", "min") and clause.margin(clause.aggregate(values)) > 0:
            return f"{clause} already fails on {len(values)} items"
    return None


class Objective:
    """Scores suggested recipes on the search items against the cached baseline (see the module doc)."""

    def __init__(
        self,
        pipe: Any,
        space: SearchSpace,
        budget: Budget,
        workload: Workload,
        baseline: Baseline,
        *,
        metrics: tuple[str, ...],
        device: torch.device,
        prune_items: int = 2,
        timing_items: int = 1,
        repeats: int = 3,
        warmup: int = 1,
    ) -> None:
        self.pipe, self.space, self.budget, self.workload, self.baseline = pipe, space, budget, workload, baseline
        self.items: list[WorkloadItem] = workload.items()
        self.metrics, self.device = metrics, device
        self.prune_items, self.repeats, self.warmup = min(prune_items, len(self.items)), repeats, warmup
        self.timing = workload.model_copy(update=_first_items(workload, timing_items))
        self.primary = budget.clauses[0]

    def values(self, outcome: TrialOutcome) -> tuple[float, float]:
        """Optuna objectives: (speedup, the first budget clause's aggregate)."""
        return outcome.speedup, self.primary.aggregate(outcome.per_image[self.primary.metric])

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize" if self.primary.op in ("<", "<=") else "maximize"]

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        methods = self.space.suggest(trial)
        try:
            recipe = Recipe.from_dict({"schema_version": 1, "methods": [{"name": n, "params": p} for n, p in methods]})
        except RecipeError as e:
            trial.set_user_attr("pruned_because", f"invalid combination: {e}")
            raise optuna.TrialPruned(str(e)) from None
        trial.set_user_attr("recipe", recipe.to_dict())
        outcome = self.evaluate(recipe, trial)
        trial.set_user_attr("per_image", outcome.per_image)
        trial.set_user_attr("constraints", outcome.constraints)
        for i, (clause, margin) in enumerate(zip(self.budget.clauses, outcome.constraints, strict=True)):
            trial.set_constraint(f"{i}:{clause}", margin)  # <= 0 is feasible; the sampler and best_trials read it
        trial.set_user_attr("speedup_ci", list(outcome.speedup_ci))
        trial.set_user_attr("flops_ratio", outcome.flops_ratio)
        trial.set_user_attr("stats", outcome.stats)
        return self.values(outcome)

    def evaluate(self, recipe: Recipe, trial: optuna.Trial | None = None) -> TrialOutcome:
        """Score one recipe; raises `optuna.TrialPruned` when a stage rules it out."""
        if not recipe.methods:
            per_image = quality(self.baseline.outputs, self.baseline.outputs, self.metrics)
            return TrialOutcome(1.0, (1.0, 1.0), 1.0, per_image, self._constraints(per_image))
        try:
            handle = recipe.apply(self.pipe)
        except RecipeError as e:
            self._prune(trial, f"does not apply: {e}")
        try:
            first, flops = generate_counted(self.pipe, self.workload, self.items[:1], device=self.device)
            ratio = flops.total / self.baseline.flops[0] if self.baseline.flops[0] else 1.0
            if ratio > 0.999 and not any(get_method(m.name).flop_neutral for m in recipe.methods):
                self._prune(trial, f"inert: saves no denoiser FLOPs (ratio {ratio:.4f})")
            idle = [h.name for h in handle.handles if _idle(h)]
            if idle:  # a method that never acted only adds overhead: the same recipe without it is simpler and faster
                self._prune(trial, f"inactive: {', '.join(idle)} saved no work on the first item")
            early = self._outputs(first, self.items[1 : self.prune_items])
            per_image = quality(early, self.baseline.outputs[: len(early)], self.metrics)
            reason = clearly_over(self.budget, per_image)
            if reason:
                self._prune(trial, f"clearly over budget: {reason}", per_image)
            outputs = self._outputs(early, self.items[self.prune_items :])
            per_image = quality(outputs, self.baseline.outputs, self.metrics)
            stats = {h.name: dict(h.stats) for h in handle.handles}
        finally:
            handle.remove()
        samples, _ = time_variants(
            self.pipe,
            recipe,
            self.timing,
            self.device,
            repeats=self.repeats,
            warmup=self.warmup,
            interleave=True,
            advance=lambda *_: None,
        )
        base, cand = samples["baseline"], samples["candidate"]
        speedup = _median(base) / _median(cand)
        return TrialOutcome(
            speedup, speedup_interval(base, cand), ratio, per_image, self._constraints(per_image), stats
        )

    def _outputs(self, done: torch.Tensor, items: list[WorkloadItem]) -> torch.Tensor:
        """``done`` followed by the outputs of ``items`` (none to generate is fine)."""
        if not items:
            return done
        return torch.cat([done, generate(self.pipe, self.workload, items, device=self.device)])

    def _constraints(self, per_image: dict[str, list[float]]) -> list[float]:
        return [max(-FINITE, min(FINITE, m)) for m in self.budget.margins(per_image)]

    @staticmethod
    def _prune(trial: optuna.Trial | None, reason: str, per_image: dict | None = None) -> None:
        if trial is not None:
            trial.set_user_attr("pruned_because", reason)
            if per_image:
                trial.set_user_attr("per_image", per_image)
        raise optuna.TrialPruned(reason)


def _idle(handle: Any) -> bool:
    """Whether a method with activity counters (see `MethodSpec.activity`) left them all at zero."""
    counters = get_method(handle.name).activity
    return bool(counters) and not any(handle.stats.get(name, 0) for name in counters)


def _first_items(workload: Workload, n: int) -> dict[str, Any]:
    if workload.prompts is not None:
        return {"prompts": workload.prompts[:n], "seeds": workload.seeds[:1]}
    if workload.class_labels is not None:
        return {"class_labels": workload.class_labels[:n], "seeds": workload.seeds[:1]}
    return {"seeds": workload.seeds[:n]}


def _median(values: list[float]) -> float:
    return float(statistics.median(values))

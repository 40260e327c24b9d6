"""The profiler: baseline outputs (cached), candidate outputs and quality, FLOPs and timing of a recipe."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch

from autoaccel import metrics as metric_registry
from autoaccel.errors import AutoAccelError
from autoaccel.hardware import HardwareProfile
from autoaccel.profiling import _timing
from autoaccel.profiling._cache import BaselineCache, CachedOutput
from autoaccel.profiling._flops import generate_counted
from autoaccel.profiling._measurement import LatencyStats, Measurement, MemoryKind, MetricSummary
from autoaccel.profiling._outputs import execution_device, quality
from autoaccel.profiling._stats import speedup_interval
from autoaccel.recipes import Recipe
from autoaccel.workload import Workload, WorkloadItem

__all__ = ["BaselineOutputs", "ProfileError", "baseline_outputs", "open_cache", "profile"]


class ProfileError(AutoAccelError, ValueError):
    """Profiling cannot start: bad arguments, a recipe already applied, an unknown or unavailable metric."""


# -- the profiler -----------------------------------------------------------------------------------------------
def _check_metrics(metrics: Sequence[str]) -> list[str]:
    names = []
    for name in metrics:
        try:
            spec = metric_registry.get(name)
        except KeyError as e:
            raise ProfileError(str(e.args[0])) from None
        if not spec.ready():
            raise ProfileError(f"metric {spec.name!r} cannot run here: {spec.description}; see docs/metrics.md")
        names.append(spec.name)
    if len(set(names)) != len(names):
        raise ProfileError(f"metrics are repeated: {list(metrics)}")
    return names


def _baseline(
    pipe: Any,
    workload: Workload,
    items: Sequence[WorkloadItem],
    cache: BaselineCache | None,
    device: torch.device,
    advance: Callable[[str, int], None],
) -> tuple[torch.Tensor, float | None, int]:
    """Reference outputs (cached or computed) with the baseline's mean denoiser FLOPs per item; and #computed."""
    found: dict[int, CachedOutput] = {}
    if cache is not None:
        for i, item in enumerate(items):
            entry = cache.load(item)
            if entry is not None:
                found[i] = entry
    missing = [i for i in range(len(items)) if i not in found]
    size = workload.batch_size
    for batch in (missing[k : k + size] for k in range(0, len(missing), size)):
        images, flops = generate_counted(pipe, workload, [items[i] for i in batch], device=device)
        for i, image in zip(batch, images, strict=True):
            found[i] = CachedOutput(image, flops.total / len(batch))
            if cache is not None:
                cache.store(items[i], found[i])  # stored as soon as computed: an interrupt keeps finished items
        advance("baseline outputs", len(batch))
    reference = torch.stack([found[i].image for i in range(len(items))])
    counted = [found[i].flops for i in range(len(items)) if found[i].flops is not None]
    mean_flops = sum(counted) / len(counted) if counted else None
    return reference, mean_flops, len(missing)


@dataclass(frozen=True)
class BaselineOutputs:
    """Reference outputs of workload items: ``images`` (N, C, H, W float32 CPU, items in order), the baseline's mean
    denoiser FLOPs per image (``None`` if not counted), and how many items were computed now or read from the cache."""

    images: torch.Tensor
    flops_per_image: float | None
    computed: int
    cached: int


def open_cache(
    pipe: Any,
    workload: Workload,
    device: torch.device,
    cache_dir: str | Path | Literal[False] | None = None,
    *,
    model_id: str | None = None,
    revision: str | None = None,
    hardware: HardwareProfile | None = None,
) -> BaselineCache | None:
    """The baseline cache `profile` uses for this pipeline, workload and device (``None`` when ``cache_dir=False``).

    Entries are keyed by ``"<device type>:<HardwareProfile.key()>"``, so outputs from another GPU model are not reused.
    Call it while the pipeline is unaccelerated (it fingerprints the weights).
    """
    if cache_dir is False:
        return None
    hardware = hardware or HardwareProfile.current(device)
    model_id = model_id or getattr(pipe, "name_or_path", None) or None
    key = f"{device.type}:{hardware.key()}"
    return BaselineCache(cache_dir, pipe, workload, device=key, model_id=model_id, revision=revision)


def baseline_outputs(
    pipe: Any,
    workload: Workload,
    items: Sequence[WorkloadItem] | None = None,
    *,
    device: str | torch.device | None = None,
    cache_dir: str | Path | Literal[False] | None = None,
    model_id: str | None = None,
    revision: str | None = None,
) -> BaselineOutputs:
    """Baseline outputs of ``items`` (default: all), read from the cache `profile` uses or computed and cached.

    The pipeline must be unaccelerated. Same cache keys as `profile`, so either reuses the other's entries.
    """
    if getattr(pipe, "autoaccel_recipe", None) is not None:
        raise ProfileError("the pipeline has a recipe applied; baseline outputs need the unaccelerated pipeline")
    dev = torch.device(device) if device is not None else execution_device(pipe)
    cache = open_cache(pipe, workload, dev, cache_dir, model_id=model_id, revision=revision)
    items = list(workload.items() if items is None else items)
    images, flops, computed = _baseline(pipe, workload, items, cache, dev, lambda *_: None)
    return BaselineOutputs(images, flops, computed, len(items) - computed)


def profile(
    pipe: Any,
    recipe: Recipe | dict | str | Path,
    workload: Workload,
    *,
    metrics: Sequence[str] = ("lpips", "psnr"),
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device | None = None,
    cache_dir: str | Path | Literal[False] | None = None,
    model_id: str | None = None,
    revision: str | None = None,
    progress: bool = True,
    threads: int | None = None,
    interleave: bool = True,
) -> Measurement:
    """Measure a recipe against the unaccelerated pipeline on a workload.

    Steps: (1) baseline outputs of every item, read from the cache or computed (and cached) with their denoiser
    FLOPs; (2) the recipe is applied, every item generated once under a FLOP counter, and each metric computed against
    the baseline; (3) ``warmup`` untimed then ``repeats`` timed generations of the whole workload for both variants,
    interleaved (the recipe applied and removed around each candidate run) unless ``interleave=False``. The pipeline
    is restored in every case, also on errors and KeyboardInterrupt. See docs/measurement.md.

    Args:
        pipe: A diffusers pipeline in its unaccelerated state.
        recipe: The candidate (a `Recipe`, dict, JSON string or path).
        workload: What to generate (see `Workload`).
        metrics: Metric names (`autoaccel.metrics.available`), compared per image against the baseline output.
        repeats: Timed generations of the workload per variant.
        warmup: Untimed generations per variant before timing.
        device: Device the pipeline runs on (default: its execution device); the pipeline is not moved.
        cache_dir: Baseline cache folder (default: `default_cache_dir`); ``False`` disables the cache.
        model_id / revision: Model identity for the cache key (default: ``pipe.name_or_path``). Entries are also keyed
            by a fingerprint of the weights, so an unnamed pipeline still reuses its cache across processes.
        progress: Show a rich progress bar (only on a terminal).
        threads: torch CPU threads during profiling (restored after); ``None`` keeps the current setting.
        interleave: Alternate baseline and candidate runs; ``False`` applies the recipe once (for slow-to-apply
            recipes) and times all candidate runs, then all baseline runs.

    Returns:
        A `Measurement`.

    Raises:
        ProfileError: Bad arguments, an already applied recipe, an unknown or unavailable metric.
        WorkloadError: The workload does not fit the pipeline.
        RecipeError: The recipe does not apply to this pipeline.
    """
    started = datetime.now(timezone.utc)
    recipe = Recipe.coerce(recipe)
    names = _check_metrics(metrics)
    if repeats < 1 or warmup < 0:
        raise ProfileError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    if threads is not None and threads < 1:
        raise ProfileError(f"threads must be >= 1, got {threads}")
    if getattr(pipe, "autoaccel_recipe", None) is not None:
        raise ProfileError("the pipeline already has a recipe applied; call handle.remove() before profiling")
    workload.check(pipe)
    actual = execution_device(pipe)
    dev = torch.device(device) if device is not None else actual
    if dev.type != actual.type:
        raise ProfileError(f"the pipeline runs on {actual} but device={dev}; move it first with pipe.to({str(dev)!r})")
    model_id = model_id or getattr(pipe, "name_or_path", None) or None
    items = workload.items()
    n = len(items)
    with _timing.threads(threads) as n_threads:
        hardware = HardwareProfile.current(dev)
        cache = open_cache(pipe, workload, dev, cache_dir, model_id=model_id, revision=revision, hardware=hardware)
        total = n * (2 + 2 * (warmup + repeats))
        with _timing.progress_bar(progress, total) as advance:
            reference, base_flops, computed = _baseline(pipe, workload, items, cache, dev, advance)
            advance("baseline outputs", n - computed)
            handle = recipe.apply(pipe)
            try:
                outputs, flops = generate_counted(
                    pipe, workload, items, device=dev, on_batch=lambda k: advance("candidate", k)
                )
                stats = copy.deepcopy(handle.stats)
            finally:
                handle.remove()
            prompts = [str(item.prompt) for item in items] if workload.prompts is not None else None
            per_image = quality(outputs, reference, names, prompts=prompts)
            samples, memory = _timing.time_variants(
                pipe, recipe, workload, dev, repeats=repeats, warmup=warmup, interleave=interleave, advance=advance
            )
    base, cand = LatencyStats.from_samples(samples["baseline"]), LatencyStats.from_samples(samples["candidate"])
    cand_flops = flops.total / n
    ratio = cand_flops / base_flops if base_flops else None
    return Measurement(
        model_id=model_id,
        revision=revision,
        pipeline_class=type(pipe).__name__,
        device=str(dev),
        recipe=recipe.to_dict(),
        workload=workload,
        workload_fingerprint=workload.fingerprint(),
        hardware=hardware,
        threads=n_threads,
        repeats=repeats,
        warmup=warmup,
        interleaved=interleave,
        baseline_latency=base,
        candidate_latency=cand,
        speedup=base.median / cand.median if cand.median > 0 else math.inf,
        speedup_ci=speedup_interval(base.samples, cand.samples),
        baseline_flops=base_flops,
        candidate_flops=cand_flops,
        flops_ratio=ratio,
        baseline_peak_memory_bytes=memory.get("baseline", {}).get("peak"),
        candidate_peak_memory_bytes=memory.get("candidate", {}).get("peak"),
        memory_kind=_memory_kind(memory),
        per_image=per_image,
        quality={
            name: MetricSummary.from_values(values, higher_is_better=metric_registry.get(name).higher_is_better)
            for name, values in per_image.items()
        },
        method_stats=stats,
        baseline_items_computed=computed,
        baseline_items_cached=n - computed,
        started_at=started,
        finished_at=datetime.now(timezone.utc),
    )


def _memory_kind(memory: dict[str, dict[str, Any]]) -> MemoryKind:
    return memory.get("candidate", memory.get("baseline", {})).get("kind", "unavailable")

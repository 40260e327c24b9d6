"""The profiler: generate, count denoiser FLOPs, time, and compare a recipe with the baseline on a workload."""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.flop_counter import FlopCounterMode

from autoaccel import metrics as metric_registry
from autoaccel.errors import AutoAccelError
from autoaccel.hardware import HardwareProfile
from autoaccel.methods._pipeline import denoiser
from autoaccel.profiling._cache import BaselineCache, CachedOutput
from autoaccel.profiling._measurement import LatencyStats, Measurement, MemoryKind, MetricSummary
from autoaccel.profiling._stats import speedup_interval
from autoaccel.recipes import Recipe
from autoaccel.workload import Workload, WorkloadError, WorkloadItem

__all__ = ["DenoiserFlops", "ProfileError", "count_denoiser_flops", "generate", "profile", "quality"]

Tick = Callable[[int], None]


class ProfileError(AutoAccelError, ValueError):
    """Profiling cannot start: bad arguments, a recipe already applied, an unknown or unavailable metric."""


# -- building blocks --------------------------------------------------------------------------------------------
def execution_device(pipe: Any) -> torch.device:
    """The device the pipeline computes on (``pipe._execution_device``, else ``pipe.device``, else CPU)."""
    for attr in ("_execution_device", "device"):
        with contextlib.suppress(Exception):
            device = getattr(pipe, attr)
            if device is not None:
                return torch.device(device)
    return torch.device("cpu")


def generate(
    pipe: Any,
    workload: Workload,
    items: Sequence[WorkloadItem] | None = None,
    *,
    device: str | torch.device | None = None,
    on_batch: Tick | None = None,
) -> torch.Tensor:
    """Outputs of ``items`` (default: all) with the pipeline in its current state, in batches of ``batch_size``.

    Returns:
        A float32 CPU tensor, one image per item in order: (N, C, H, W) in [0, 1].
    """
    device = device if device is not None else execution_device(pipe)
    outputs = []
    for batch in workload.batches(items):
        images = pipe(**workload.pipeline_kwargs(batch, device=device)).images
        if not isinstance(images, torch.Tensor) or images.shape[0] != len(batch):
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise WorkloadError(
                f'{type(pipe).__name__} returned {got} for {len(batch)} items with output_type="pt"; '
                "expected a tensor with one image per item"
            )
        outputs.append(images.detach().to("cpu", torch.float32))
        if on_batch is not None:
            on_batch(len(batch))
    return torch.cat(outputs)


def quality(
    outputs: torch.Tensor,
    reference: torch.Tensor,
    metrics: Sequence[str] = ("lpips", "psnr"),
    *,
    prompts: Sequence[str] | None = None,
) -> dict[str, list[float]]:
    """Per-image value of every metric, ``outputs`` against ``reference``, keyed by canonical metric name.

    ``prompts`` (one per image) is passed to metrics that compare images with text (``clip_score``).
    """
    result = {}
    for name in metrics:
        spec = metric_registry.get(name)
        kwargs = {} if spec.needs_reference else {"prompts": list(prompts) if prompts is not None else None}
        values = metric_registry.compute(spec.name, outputs, reference if spec.needs_reference else None, **kwargs)
        result[spec.name] = [float(v) for v in values.reshape(-1).tolist()]
    return result


class DenoiserFlops:
    """Counts FLOPs (``torch.utils.flop_counter``) spent inside the pipeline's denoiser while the context is open.

    One ``FlopCounterMode`` spans the context; forward hooks on the denoiser add up the counter's growth during each
    top-level denoiser call, so text encoders, the VAE and scheduler arithmetic are excluded, and work that a method
    skips inside the denoiser (cached blocks, a dropped CFG branch, fewer steps) is not counted. ``total`` is the sum,
    ``calls`` the number of denoiser calls.

    Example:
        >>> with DenoiserFlops(pipe) as flops:
        ...     pipe("a cat", num_inference_steps=4)
        >>> flops.total, flops.calls
    """

    def __init__(self, pipe: Any) -> None:
        self.module = denoiser(pipe)
        self.total = 0
        self.calls = 0
        self._depth = 0
        self._start = 0
        self._counter: FlopCounterMode | None = None
        self._hooks: list[Any] = []

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        if self._depth == 0 and self._counter is not None:
            self._start = self._counter.get_total_flops()
        self._depth += 1

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._counter is not None:
            self.total += self._counter.get_total_flops() - self._start
            self.calls += 1

    def __enter__(self) -> DenoiserFlops:
        self._counter = FlopCounterMode(display=False)
        self._counter.__enter__()
        self._hooks = [
            self.module.register_forward_pre_hook(self._pre),
            self.module.register_forward_hook(self._post, always_call=True),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        counter, self._counter = self._counter, None
        if counter is not None:
            counter.__exit__(*exc)


def count_denoiser_flops(pipe: Any, workload: Workload, item: WorkloadItem | None = None) -> int:
    """Denoiser FLOPs of one full generation of ``item`` (default: the workload's first) in the current state."""
    with DenoiserFlops(pipe) as flops:
        generate(pipe, workload, [item if item is not None else workload.items()[0]])
    return flops.total


# -- timing and memory ------------------------------------------------------------------------------------------
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds ``fn`` takes: CUDA events on a GPU, ``time.perf_counter`` otherwise; the device is synchronised."""
    _synchronize(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - t0


@contextlib.contextmanager
def _peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Yields a dict that holds ``peak`` (bytes) and ``kind`` (a `MemoryKind`) after the block."""
    out: dict[str, Any] = {"peak": None, "kind": "unavailable"}
    if device.type == "cuda":
        _synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        _synchronize(device)
        out.update(peak=int(torch.cuda.max_memory_allocated(device)), kind="cuda_max_allocated")
        return
    reset = False
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak resident set
        reset = True
    yield out
    if reset:
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = Path("/proc/self/status").read_text()
            kb = int(status.split("VmHWM:")[1].split()[0])
            out.update(peak=kb * 1024, kind="cpu_peak_rss")
            return
    with contextlib.suppress(ImportError):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
        out.update(peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, kind="cpu_peak_rss_lifetime")


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[int]:
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[str, int], None]]:
    """Yields ``advance(description, n)``; a rich progress bar over pipeline items when enabled and on a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )
    with bar:
        task = bar.add_task("profiling", total=total)

        def advance(description: str, n: int) -> None:
            bar.update(task, advance=n, description=description)

        yield advance


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
    items: list[WorkloadItem],
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
        with DenoiserFlops(pipe) as flops:
            images = generate(pipe, workload, [items[i] for i in batch], device=device)
        for i, image in zip(batch, images, strict=True):
            found[i] = CachedOutput(image, flops.total / len(batch))
            if cache is not None:
                cache.store(items[i], found[i])  # stored as soon as computed: an interrupt keeps finished items
        advance("baseline outputs", len(batch))
    reference = torch.stack([found[i].image for i in range(len(items))])
    counted = [found[i].flops for i in range(len(items)) if found[i].flops is not None]
    mean_flops = sum(counted) / len(counted) if counted else None
    return reference, mean_flops, len(missing)


def _time_variants(
    pipe: Any,
    recipe: Recipe,
    workload: Workload,
    device: torch.device,
    *,
    repeats: int,
    warmup: int,
    interleave: bool,
    advance: Callable[[str, int], None],
) -> tuple[dict[str, list[float]], dict[str, dict[str, Any]]]:
    """Timed generations of the whole workload: baseline and candidate, ``warmup`` untimed runs each first."""
    samples: dict[str, list[float]] = {"baseline": [], "candidate": []}
    memory: dict[str, dict[str, Any]] = {}
    n = len(workload)

    def run_all() -> None:
        for batch in workload.batches():
            pipe(**workload.pipeline_kwargs(batch, device=device))

    def run(variant: str, timed: bool) -> None:
        handle = recipe.apply(pipe) if variant == "candidate" else None
        try:
            with _peak_memory(device) if variant not in memory else contextlib.nullcontext() as mem:
                if timed:
                    samples[variant].append(_timed(run_all, device))
                else:
                    run_all()
            if mem is not None:
                memory[variant] = mem
        finally:
            if handle is not None:
                handle.remove()
        advance(f"timing {variant}", n)

    if interleave:  # ABBA order: slow drift and order effects hit both variants equally
        for _ in range(warmup):
            run("baseline", False)
            run("candidate", False)
        for r in range(repeats):
            for variant in ("baseline", "candidate") if r % 2 == 0 else ("candidate", "baseline"):
                run(variant, True)
        return samples, memory
    handle = recipe.apply(pipe)
    try:
        for i in range(warmup + repeats):
            with _peak_memory(device) if i == 0 else contextlib.nullcontext() as mem:
                if i >= warmup:
                    samples["candidate"].append(_timed(run_all, device))
                else:
                    run_all()
            if mem is not None:
                memory["candidate"] = mem
            advance("timing candidate", n)
    finally:
        handle.remove()
    for i in range(warmup + repeats):
        run("baseline", i >= warmup)
    return samples, memory


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
    with _threads(threads) as n_threads:
        hardware = HardwareProfile.current(dev)
        cache = None
        if cache_dir is not False:
            device_key = f"{dev.type}:{hardware.key()}"
            cache = BaselineCache(cache_dir, pipe, workload, device=device_key, model_id=model_id, revision=revision)
        total = n * (2 + 2 * (warmup + repeats))
        with _progress(progress, total) as advance:
            reference, base_flops, computed = _baseline(pipe, workload, items, cache, dev, advance)
            advance("baseline outputs", n - computed)
            handle = recipe.apply(pipe)
            try:
                with DenoiserFlops(pipe) as flops:
                    outputs = generate(pipe, workload, items, device=dev, on_batch=lambda k: advance("candidate", k))
                stats = copy.deepcopy(handle.stats)
            finally:
                handle.remove()
            prompts = [str(item.prompt) for item in items] if workload.prompts is not None else None
            per_image = quality(outputs, reference, names, prompts=prompts)
            samples, memory = _time_variants(
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

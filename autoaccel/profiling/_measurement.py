"""The typed result of profiling: `Measurement`, with its latency and quality summaries. JSON round-trips exactly."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from autoaccel.hardware import HardwareProfile
from autoaccel.profiling._stats import mean_interval, spread
from autoaccel.workload import Workload

__all__ = ["LatencyStats", "Measurement", "MemoryKind", "MetricSummary"]

MemoryKind = Literal["cuda_max_allocated", "cpu_peak_rss", "cpu_peak_rss_lifetime", "unavailable"]
"""How peak memory was measured: CUDA ``max_memory_allocated`` since a reset, the process' peak resident set since a
reset (Linux ``/proc/self/clear_refs``), the process' lifetime peak resident set (other systems), or not at all."""

_CONFIG = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


class LatencyStats(BaseModel):
    """Wall-clock seconds of one generation of the whole workload, over the timed repeats.

    Args:
        samples: Every timed repeat, in order.
        median: Median of the samples.
        iqr: Interquartile range (75th minus 25th percentile, linear interpolation).
        mad: Median absolute deviation from the median (unscaled).
        n: Number of samples.
    """

    model_config = _CONFIG
    samples: list[float]
    median: float
    iqr: float
    mad: float
    n: int

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> LatencyStats:
        median, iqr, mad = spread(samples)
        return cls(samples=[float(s) for s in samples], median=median, iqr=iqr, mad=mad, n=len(samples))


class MetricSummary(BaseModel):
    """Mean of a metric over the images with a Student-t confidence interval (see `mean_interval`)."""

    model_config = _CONFIG
    mean: float
    ci_low: float
    ci_high: float
    level: float = 0.95
    n: int
    higher_is_better: bool

    @classmethod
    def from_values(cls, values: Sequence[float], *, higher_is_better: bool, level: float = 0.95) -> MetricSummary:
        mean, low, high = mean_interval(values, level)
        return cls(mean=mean, ci_low=low, ci_high=high, level=level, n=len(values), higher_is_better=higher_is_better)


class Measurement(BaseModel):
    """What `autoaccel.profiling.profile` measured: speed, FLOPs, memory and per-image quality of a recipe.

    ``per_image`` maps each metric to one value per workload item (in `Workload.items` order), so
    ``Budget.parse("lpips<0.1").check(measurement)`` works directly. Non-finite floats (PSNR of identical images is
    ``inf``) are written as the JSON strings ``"Infinity"`` / ``"-Infinity"`` / ``"NaN"`` and read back as floats.

    Args:
        schema_version: 1.
        model_id / revision / pipeline_class: The pipeline profiled.
        device: ``torch.device`` string the pipeline ran on.
        recipe: The candidate recipe (its JSON dict).
        workload / workload_fingerprint: What was generated (see `Workload.fingerprint`).
        hardware: Where it ran.
        threads: torch CPU threads during the run.
        repeats / warmup / interleaved: How timing was done (see docs/measurement.md).
        baseline_latency / candidate_latency: Seconds per generation of the whole workload.
        speedup: ``baseline_latency.median / candidate_latency.median``.
        speedup_ci: 95% paired-bootstrap interval of the speedup (see `speedup_interval`).
        baseline_flops / candidate_flops: Mean FLOPs inside the denoiser per image (``None`` if not counted).
        flops_ratio: ``candidate_flops / baseline_flops``.
        baseline_peak_memory_bytes / candidate_peak_memory_bytes / memory_kind: Peak memory (see `MemoryKind`).
        per_image: Metric name -> one value per item, candidate against the baseline output.
        quality: Metric name -> mean and 95% CI of ``per_image``.
        method_stats: ``handle.stats`` of the recipe after generating the workload once (e.g. skipped blocks).
        baseline_items_computed / baseline_items_cached: Baseline outputs computed now vs read from the cache.
        started_at / finished_at: UTC timestamps.
    """

    model_config = _CONFIG

    schema_version: Literal[1] = 1
    model_id: str | None = None
    revision: str | None = None
    pipeline_class: str
    device: str
    recipe: dict[str, JsonValue]
    workload: Workload
    workload_fingerprint: str
    hardware: HardwareProfile
    threads: int
    repeats: int
    warmup: int
    interleaved: bool
    baseline_latency: LatencyStats
    candidate_latency: LatencyStats
    speedup: float
    speedup_ci: tuple[float, float]
    baseline_flops: float | None = None
    candidate_flops: float | None = None
    flops_ratio: float | None = None
    baseline_peak_memory_bytes: int | None = None
    candidate_peak_memory_bytes: int | None = None
    memory_kind: MemoryKind = "unavailable"
    per_image: dict[str, list[float]] = Field(default_factory=dict)
    quality: dict[str, MetricSummary] = Field(default_factory=dict)
    method_stats: dict[str, JsonValue] = Field(default_factory=dict)
    baseline_items_computed: int = 0
    baseline_items_cached: int = 0
    started_at: datetime
    finished_at: datetime

    # -- serialisation ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite floats as strings), e.g. for ``Recipe(metrics=...)``."""
        return json.loads(self.model_dump_json())

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> Measurement:
        return cls.model_validate_json(text)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Measurement:
        return cls.from_json(Path(path).read_bytes())

    def recipe_metrics(self) -> dict[str, Any]:
        """The compact summary a recipe carries in ``Recipe.metrics`` (JSON-safe; per-image values included)."""
        keep = ("speedup", "speedup_ci", "flops_ratio", "quality", "per_image", "workload_fingerprint", "device")
        data = self.to_dict()
        out = {k: data[k] for k in keep}
        out["latency_s"] = {"baseline": self.baseline_latency.median, "candidate": self.candidate_latency.median}
        return out

    def summary(self) -> str:
        """One line: speedup with its interval, FLOPs ratio and each metric's mean."""
        low, high = self.speedup_ci
        parts = [f"speedup {self.speedup:.2f}x [{low:.2f}, {high:.2f}]"]
        if self.flops_ratio is not None:
            parts.append(f"flops {self.flops_ratio:.3f}")
        parts += [f"{name} {_fmt(s.mean)}" for name, s in self.quality.items()]
        return ", ".join(parts)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)

"""Profiling: speed, FLOPs, memory and quality of a recipe against the unaccelerated pipeline on a workload.

`profile` is the entry point; the search builds on the pieces it is made of: `generate` (outputs of workload items
with the pipeline as it is), `quality` (per-image metrics against reference outputs), `count_denoiser_flops` /
`DenoiserFlops` (FLOPs inside the denoiser only), `baseline_outputs` / `open_cache` / `BaselineCache` (baseline
outputs, cached on disk with the same keys as `profile`) and `time_variants` (interleaved timing).
See docs/measurement.md for how each number is measured.

Example:
    >>> from autoaccel.profiling import profile
    >>> from autoaccel.workload import Workload
    >>> m = profile(pipe, {"schema_version": 1, "methods": [{"name": "block_cache"}]}, Workload.for_pipeline(pipe))
    >>> m.summary()
    'speedup 1.62x [1.58, 1.66], flops 0.581, lpips 0.0412, psnr 29.8'
    >>> Budget.parse("lpips<0.1").check(m)
    True
"""

from autoaccel.profiling._cache import BaselineCache, default_cache_dir, pipeline_fingerprint
from autoaccel.profiling._flops import DenoiserFlops, count_denoiser_flops, generate_counted
from autoaccel.profiling._measurement import LatencyStats, Measurement, MemoryKind, MetricSummary
from autoaccel.profiling._outputs import execution_device, generate, quality
from autoaccel.profiling._run import BaselineOutputs, ProfileError, baseline_outputs, open_cache, profile
from autoaccel.profiling._stats import mean_interval, speedup_interval, t_quantile
from autoaccel.profiling._timing import time_variants

__all__ = [
    "BaselineCache",
    "BaselineOutputs",
    "DenoiserFlops",
    "LatencyStats",
    "Measurement",
    "MemoryKind",
    "MetricSummary",
    "ProfileError",
    "baseline_outputs",
    "count_denoiser_flops",
    "default_cache_dir",
    "execution_device",
    "generate",
    "generate_counted",
    "mean_interval",
    "open_cache",
    "pipeline_fingerprint",
    "profile",
    "quality",
    "speedup_interval",
    "t_quantile",
    "time_variants",
]

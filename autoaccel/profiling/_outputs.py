"""Generating workload items with the pipeline as it is, and comparing outputs with reference outputs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from autoaccel import metrics as metric_registry
from autoaccel.workload import Workload, WorkloadError, WorkloadItem

__all__ = ["execution_device", "generate", "quality"]

Tick = Callable[[int], None]


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

"""Input checks shared by all metrics, and the video rule (one value per video = mean of its per-frame values)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from autoaccel.metrics._registry import MetricInputError

RANGE_TOLERANCE = 1e-3
"""Values may leave [0, 1] by this much (resampling overshoot) and are clamped; anything further is an error."""

ImageFn = Callable[..., torch.Tensor]


def check_batch(x: Any, *, what: str, metric: str) -> torch.Tensor:
    """Validates one image batch (4-D N,C,H,W or 5-D N,F,C,H,W float in [0, 1]) and returns it clamped to [0, 1]."""
    if not isinstance(x, torch.Tensor):
        hint = " (for NHWC numpy arrays use torch.from_numpy(a).permute(0, 3, 1, 2))" if hasattr(x, "shape") else ""
        raise MetricInputError(f"{metric}: {what} must be a torch.Tensor, got {type(x).__name__}{hint}")
    if x.ndim not in (4, 5):
        raise MetricInputError(
            f"{metric}: {what} must be 4-D (N, C, H, W) or 5-D video (N, F, C, H, W), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise MetricInputError(
            f"{metric}: {what} must be a float tensor in [0, 1], got {x.dtype} (use x.float() / 255)"
        )
    if x.numel() == 0:
        raise MetricInputError(f"{metric}: {what} is empty (shape {tuple(x.shape)})")
    if not bool(torch.isfinite(x).all()):
        raise MetricInputError(f"{metric}: {what} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise MetricInputError(
            f"{metric}: {what} must hold values in [0, 1], found [{lo:.4g}, {hi:.4g}] "
            "(diffusers returns [0, 1] with output_type='pt'; map [-1, 1] outputs with (x + 1) / 2)"
        )
    return x.clamp(0.0, 1.0)


def check_pair(
    images: Any, reference: Any, *, metric: str, needs_reference: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validates ``images`` and ``reference`` (same shape) and moves ``reference`` to the images' device."""
    images = check_batch(images, what="images", metric=metric)
    if not needs_reference:
        return images, None
    if reference is None:
        raise MetricInputError(f"{metric}: a reference batch is required")
    reference = check_batch(reference, what="reference", metric=metric)
    if images.shape != reference.shape:
        raise MetricInputError(
            f"{metric}: images and reference must have the same shape, got {tuple(images.shape)} "
            f"and {tuple(reference.shape)}"
        )
    return images, reference.to(device=images.device)


def per_image(metric: str, *, needs_reference: bool = True) -> Callable[[ImageFn], ImageFn]:
    """Wraps ``fn(images, reference, **kw)`` written for checked 4-D batches so it also accepts videos.

    Accepted: 4-D N,C,H,W (one value per image); 5-D N,F,C,H,W (frames scored as images, then averaged per video);
    a list/tuple of 4-D F,C,H,W tensors (one video each, frame counts and sizes may differ; ``reference`` must be a
    list of the same length). Keyword arguments that are per-item sequences (``prompts``) are repeated per frame.
    """

    def decorate(fn: ImageFn) -> ImageFn:
        @functools.wraps(fn)
        def wrapper(images: Any, reference: Any = None, **kwargs: Any) -> torch.Tensor:
            if isinstance(images, (list, tuple)):
                return _per_video_list(wrapper, images, reference, metric, needs_reference, kwargs)
            images, reference = check_pair(images, reference, metric=metric, needs_reference=needs_reference)
            if images.ndim == 4:
                return fn(images, reference, **kwargs)
            n, f = images.shape[:2]
            flat_ref = None if reference is None else reference.flatten(0, 1)
            kwargs = {k: _repeat_per_frame(v, n, f) for k, v in kwargs.items()}
            return fn(images.flatten(0, 1), flat_ref, **kwargs).view(n, f).mean(dim=1)

        return wrapper

    return decorate


def _repeat_per_frame(value: Any, n: int, f: int) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == n:
        return [item for item in value for _ in range(f)]
    return value


def _per_video_list(
    wrapper: ImageFn, videos: Sequence[Any], reference: Any, metric: str, needs_reference: bool, kwargs: dict
) -> torch.Tensor:
    if not videos:
        raise MetricInputError(f"{metric}: images is an empty list")
    if needs_reference and (not isinstance(reference, (list, tuple)) or len(reference) != len(videos)):
        raise MetricInputError(f"{metric}: a list of {len(videos)} videos needs a reference list of the same length")
    values = []
    for i, video in enumerate(videos):
        if not isinstance(video, torch.Tensor) or video.ndim != 4:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise MetricInputError(f"{metric}: video {i} must be a 4-D (F, C, H, W) tensor, got {shape}")
        ref = reference[i].unsqueeze(0) if needs_reference and isinstance(reference[i], torch.Tensor) else None
        if needs_reference and ref is None:
            raise MetricInputError(f"{metric}: reference video {i} must be a 4-D (F, C, H, W) tensor")
        item_kwargs = {k: _pick(v, i, len(videos)) for k, v in kwargs.items()}
        values.append(wrapper(video.unsqueeze(0), ref, **item_kwargs))
    return torch.cat([v.to(values[0].device) for v in values])


def _pick(value: Any, i: int, n: int) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == n:
        return [value[i]]
    return value

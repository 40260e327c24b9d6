"""Image quality metrics comparing accelerated outputs with reference outputs.

Every metric takes ``(images, reference)`` as NCHW float tensors in [0, 1] (or N,F,C,H,W videos, averaged per frame)
and returns one value per image::

    from autoaccel import metrics

    metrics.available()                       # ['clip_score', 'lpips', 'ms_ssim', 'psnr', 'ssim']
    metrics.compute("lpips", fast, ref)       # tensor([0.0123, ...])
    metrics.psnr(fast, ref)                   # the same functions, called directly
    metrics.get("psnr").higher_is_better      # True: the direction budgets and the search need

See docs/metrics.md for the exact definitions, the small-image rules and where LPIPS weights come from.
"""

from __future__ import annotations

from autoaccel.metrics._clip import CLIP_ENV, clip_ready, clip_score
from autoaccel.metrics._lpips import MIN_SIZE as LPIPS_MIN_SIZE
from autoaccel.metrics._lpips import lpips, resize_for_lpips
from autoaccel.metrics._lpips_weights import WEIGHTS_ENV as LPIPS_WEIGHTS_ENV
from autoaccel.metrics._lpips_weights import resolve_weights as resolve_lpips_weights
from autoaccel.metrics._lpips_weights import weights_present as lpips_weights_present
from autoaccel.metrics._pixel import ms_ssim, ms_ssim_scales, psnr, ssim, ssim_window
from autoaccel.metrics._registry import (
    MetricInputError,
    MetricSpec,
    MetricUnavailableError,
    available,
    canonical_name,
    compute,
    get,
    register,
)

register(
    MetricSpec(
        "lpips", lpips, False, "LPIPS v0.1 AlexNet perceptual distance (0 = identical)", ready=lpips_weights_present
    )
)
register(MetricSpec("psnr", psnr, True, "peak signal-to-noise ratio in dB, data range 1 (inf = identical)"))
register(MetricSpec("ssim", ssim, True, "structural similarity, Gaussian window 11, sigma 1.5 (1 = identical)"))
register(
    MetricSpec(
        "ms_ssim", ms_ssim, True, "multi-scale SSIM, up to 5 scales (1 = identical)", aliases=("ms-ssim", "msssim")
    )
)
register(
    MetricSpec(
        "clip_score",
        clip_score,
        True,
        "CLIP image-prompt similarity, 100 * cosine (optional: needs a local CLIP model and prompts=)",
        needs_reference=False,
        ready=clip_ready,
        aliases=("clip",),
    )
)

__all__ = [
    "CLIP_ENV",
    "LPIPS_MIN_SIZE",
    "LPIPS_WEIGHTS_ENV",
    "MetricInputError",
    "MetricSpec",
    "MetricUnavailableError",
    "available",
    "canonical_name",
    "clip_ready",
    "clip_score",
    "compute",
    "get",
    "lpips",
    "lpips_weights_present",
    "ms_ssim",
    "ms_ssim_scales",
    "psnr",
    "register",
    "resize_for_lpips",
    "resolve_lpips_weights",
    "ssim",
    "ssim_window",
]

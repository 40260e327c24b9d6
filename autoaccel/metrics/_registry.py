"""The metric registry: names, directions and descriptions, shared by `compute`, the budget parser and the search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from autoaccel.errors import AutoAccelError


class MetricInputError(AutoAccelError, ValueError):
    """Images given to a metric are malformed (shape, dtype, range, NaN); the message names the problem."""


class MetricUnavailableError(AutoAccelError, RuntimeError):
    """A metric cannot run here: its weights are missing and cannot be fetched (the message says what to set)."""


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    Args:
        name: Canonical lowercase name (what budgets print).
        fn: ``fn(images, reference, **kwargs) -> Tensor`` with one value per image (or per video).
        higher_is_better: Direction of quality: ``True`` for PSNR/SSIM/MS-SSIM/CLIP score, ``False`` for LPIPS.
        description: One line for help texts and reports.
        needs_reference: Whether ``reference`` is used (CLIP score compares images with prompts instead).
        ready: Returns whether the metric can run now without a download (weights present, optional deps present).
        aliases: Other accepted spellings (matched case-insensitively).
    """

    name: str
    fn: Callable[..., torch.Tensor] = field(repr=False)
    higher_is_better: bool
    description: str
    needs_reference: bool = True
    ready: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)
    aliases: tuple[str, ...] = ()

    def __call__(self, images: Any, reference: Any = None, **kwargs: Any) -> torch.Tensor:
        return self.fn(images, reference, **kwargs)


_REGISTRY: dict[str, MetricSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: MetricSpec) -> MetricSpec:
    """Adds ``spec`` to the registry; a taken name or alias raises ``ValueError``."""
    keys = [spec.name.lower(), *(a.lower() for a in spec.aliases)]
    for key in keys:
        if key in _ALIASES:
            raise ValueError(f"metric name {key!r} is already registered (as {_ALIASES[key]!r})")
    _REGISTRY[spec.name] = spec
    for key in keys:
        _ALIASES[key] = spec.name
    return spec


def available() -> list[str]:
    """Canonical names of all registered metrics, sorted (optional ones included; see `MetricSpec.ready`)."""
    return sorted(_REGISTRY)


def canonical_name(name: str) -> str | None:
    """The canonical name for ``name`` or an alias (case-insensitive), or ``None`` when unknown."""
    return _ALIASES.get(name.strip().lower())


def get(name: str) -> MetricSpec:
    """The `MetricSpec` for ``name`` (case-insensitive, aliases accepted).

    Raises:
        KeyError: Unknown metric; the message lists the known ones.
    """
    canonical = canonical_name(name)
    if canonical is None:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(available())}")
    return _REGISTRY[canonical]


def compute(name: str, images: Any, reference: Any = None, **kwargs: Any) -> torch.Tensor:
    """Computes metric ``name`` for each image: ``compute("lpips", accelerated, reference)``.

    Args:
        name: A registered metric (see `available`).
        images: Accelerated outputs, NCHW float in [0, 1], or videos as N,F,C,H,W (averaged over frames).
        reference: Reference outputs of the same shape (unused by ``clip_score``).
        **kwargs: Passed to the metric (e.g. ``prompts=`` for ``clip_score``).

    Returns:
        A 1-D float tensor with one value per image (per video for 5-D inputs).
    """
    return get(name)(images, reference, **kwargs)

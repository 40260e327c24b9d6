"""Exact removal of hooks added by diffusers' ``apply_*`` functions (which return nothing to undo them with)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers.hooks import HookRegistry

from ._base import Handle
from ._pipeline import denoiser
from ._tracker import StepTracker, acquire_tracker


def _hook_names(model: torch.nn.Module) -> dict[torch.nn.Module, list[str]]:
    names = {}
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            names[module] = list(registry._hook_order)
    return names


def invalidate(model: torch.nn.Module) -> None:
    """Drop the registry's cached child list after hooks change below ``model`` (diffusers#14037)."""
    HookRegistry.check_if_exists_or_initialize(model).invalidate_child_registries_cache()


def apply_capturing_hooks(model: torch.nn.Module, apply: Callable[[], object]) -> Callable[[], None]:
    """Run ``apply()``, which registers diffusers hooks under ``model``; return a function removing exactly those.

    If ``apply`` raises, the hooks it managed to add are removed before the error propagates.
    """
    before = _hook_names(model)

    def undo() -> None:
        for module, names in _hook_names(model).items():
            registry = module._diffusers_hook
            for name in reversed(names):
                if name not in before.get(module, []):
                    registry.remove_hook(name, recurse=False)
        invalidate(model)

    try:
        apply()
    except Exception:
        undo()
        raise
    invalidate(model)
    return undo


def tracked_hooks_handle(pipe: Any, name: str, apply: Callable[[torch.nn.Module, StepTracker], object]) -> Handle:
    """Apply a diffusers cache to the pipeline's denoiser with the step tracker installed; removable exactly.

    ``apply(model, tracker)`` registers the hooks (usually ``diffusers.hooks.apply_*(model, config)``).
    """
    model = denoiser(pipe)
    tracker = acquire_tracker(pipe)
    try:
        undo_hooks = apply_capturing_hooks(model, lambda: apply(model, tracker))
    except Exception:
        tracker.release()
        raise

    def undo() -> None:
        undo_hooks()
        tracker.release()

    return Handle(name, undo)

"""Helpers shared by the method tests: cached tiny pipelines, deterministic runs and pristine-state checks."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from autoaccel.methods._pipeline import denoiser
from autoaccel.testing import default_call_kwargs, tiny_pipeline

STEPS = 8


@functools.cache
def pipe_for(kind: str) -> Any:
    return tiny_pipeline(kind)


def run(pipe: Any, kind: str, *, cfg: bool | None = None, steps: int = STEPS) -> tuple[torch.Tensor, int]:
    """Images and the FLOPs of one generation."""
    with FlopCounterMode(display=False) as counter:
        images = pipe(**default_call_kwargs(kind, cfg=cfg, steps=steps)).images
    return images, counter.get_total_flops()


def hook_names(pipe: Any) -> dict[str, list[str]]:
    """Every diffusers hook registered below the denoiser, by module name."""
    out = {}
    for name, module in denoiser(pipe).named_modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry._hook_order:
            out[name] = list(registry._hook_order)
    return out


def assert_pristine(pipe: Any, scheduler: Any) -> None:
    assert hook_names(pipe) == {}
    assert pipe.scheduler is scheduler
    assert getattr(pipe, "autoaccel_recipe", None) is None

"""DeepCache: reuse a UNet's high-level (deep) features for several steps, recomputing only the shallow branch.

Follows Ma et al., "DeepCache: Accelerating Diffusion Models for Free" (arXiv:2312.00858), uniform 1:N strategy:
every ``interval`` steps the whole UNet runs; in between, only the down/up blocks of depth <= ``branch`` run and the
output of the deepest skipped up block is taken from the cache.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from pydantic import Field

from ..errors import NotApplicableError
from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._hooks import invalidate
from ._pipeline import denoiser, require_family
from ._tracker import StepTracker, acquire_tracker

_HOOK = "autoaccel.deep_cache"


class DeepCacheConfig(MethodConfig):
    """Knobs of `deep_cache`. Longer ``interval`` or shallower ``branch``: faster, lower quality."""

    interval: int = Field(
        ge=1, le=20, **knob(3, "Full UNet every N steps (1: every step, nothing cached).", low=2, high=6)
    )
    branch: int = Field(
        ge=0,
        le=8,
        **knob(
            0, "Depth of the shallow branch that always runs (0: only the outermost down/up block pair).", low=0, high=2
        ),
    )
    warmup_steps: int = Field(ge=0, le=1000, **knob(1, "Initial steps always fully computed.", low=0, high=5))


class _Shared:
    def __init__(self, config: DeepCacheConfig, tracker: StepTracker, stats: dict[str, int]) -> None:
        self.config, self.tracker, self.stats = config, tracker, stats
        self.cache: dict[tuple[int, str], Any] = {}
        self.full: dict[int, bool] = {}

    def decide(self, key: str, batch: int) -> bool:
        """Called by the first skippable module of each denoiser call; True means run the whole UNet."""
        cfg, step, branch = self.config, self.tracker.step, self.tracker.branch
        cached = self.cache.get((branch, key))
        full = (
            cached is None
            or _batch(cached) != batch
            or step < cfg.warmup_steps
            or (step - cfg.warmup_steps) % cfg.interval == 0
        )
        self.full[branch] = full
        self.stats["full_steps" if full else "cached_steps"] += 1
        return full


def _batch(output: Any) -> int:
    first = output[0] if isinstance(output, tuple) else output
    return first.shape[0]


class _SkipHook(ModelHook):
    def __init__(self, key: str, shared: _Shared, *, leader: bool) -> None:
        super().__init__()
        self.key, self.shared, self.leader = key, shared, leader

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        shared = self.shared
        branch = shared.tracker.branch
        if self.leader:
            hidden = args[0] if args else kwargs["hidden_states"]
            full = shared.decide(self.key, hidden.shape[0])
        else:
            full = shared.full.get(branch, True)
        if not full:
            shared.stats["skipped_modules"] += 1
            return shared.cache[(branch, self.key)]
        out = self.fn_ref.original_forward(*args, **kwargs)
        shared.cache[(branch, self.key)] = out
        return out


def _skipped(unet: torch.nn.Module, branch: int) -> list[tuple[str, torch.nn.Module]]:
    down, up = list(unet.down_blocks), list(unet.up_blocks)
    if branch >= len(down) - 1:
        raise NotApplicableError(
            f"deep_cache: branch {branch} leaves nothing to cache; this UNet has {len(down)} down blocks, so branch "
            f"must be at most {len(down) - 2}"
        )
    skipped = [(f"down_blocks.{i}", b) for i, b in enumerate(down) if i > branch]
    if unet.mid_block is not None:
        skipped.append(("mid_block", unet.mid_block))
    skipped += [(f"up_blocks.{j}", b) for j, b in enumerate(up) if j < len(up) - 1 - branch]
    return skipped


def check(pipe: Any, config: DeepCacheConfig) -> None:
    require_family(pipe, "deep_cache", ("sd",))
    _skipped(denoiser(pipe), config.branch)


def apply(pipe: Any, config: DeepCacheConfig) -> Handle:
    check(pipe, config)
    unet = denoiser(pipe)
    stats = {"full_steps": 0, "cached_steps": 0, "skipped_modules": 0}
    tracker = acquire_tracker(pipe)
    shared = _Shared(config, tracker, stats)

    def clear() -> None:
        shared.cache.clear()
        shared.full.clear()

    unsubscribe = tracker.on_reset(clear)
    registries = []
    for i, (key, module) in enumerate(_skipped(unet, config.branch)):
        registry = HookRegistry.check_if_exists_or_initialize(module)
        registry.register_hook(_SkipHook(key, shared, leader=i == 0), _HOOK)
        registries.append(registry)
    invalidate(unet)

    def undo() -> None:
        for registry in registries:
            registry.remove_hook(_HOOK, recurse=False)
        invalidate(unet)
        unsubscribe()
        tracker.release()

    return Handle("deep_cache", undo, stats)


SPEC = register(
    MethodSpec(
        name="deep_cache",
        config=DeepCacheConfig,
        apply=apply,
        check=check,
        stage=50,
        group="feature_cache",
        paper="DeepCache, Ma et al. 2023 (arXiv:2312.00858)",
        families=("sd",),
        summary="Reuse a UNet's deep features between full steps; run only the shallow branch.",
        activity=("cached_steps",),
    )
)

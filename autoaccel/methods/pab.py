"""Pyramid Attention Broadcast: broadcast attention outputs to the next steps in the stable middle of sampling.

Follows Zhao et al., "Real-Time Video Generation with Pyramid Attention Broadcast" (arXiv:2408.12588), through
diffusers' ``apply_pyramid_attention_broadcast``.
"""

from __future__ import annotations

from typing import Any

from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast
from pydantic import Field, model_validator

from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._hooks import tracked_hooks_handle
from ._pipeline import TRANSFORMER_FAMILIES, require_family


class PABConfig(MethodConfig):
    """Knobs of `pab`. Larger skip ranges and a wider timestep window: faster, lower quality."""

    self_attention_skip_range: int = Field(
        ge=1, le=10, **knob(2, "Recompute self-attention every N steps inside the window (1: always).", low=2, high=5)
    )
    cross_attention_skip_range: int | None = Field(
        default=None, ge=1, le=10, description="Recompute cross-attention every N steps (None: always)."
    )
    window_low_t: float = Field(
        ge=0, le=1000, **knob(100.0, "Lower end of the timestep window (0-1000 scale).", low=0.0, high=400.0)
    )
    window_high_t: float = Field(
        ge=0, le=1000, **knob(800.0, "Upper end of the timestep window.", low=500.0, high=1000.0)
    )

    @model_validator(mode="after")
    def _window(self) -> PABConfig:
        if self.window_low_t >= self.window_high_t:
            raise ValueError("window_low_t must be below window_high_t")
        return self


def check(pipe: Any, config: PABConfig) -> None:
    require_family(pipe, "pab", TRANSFORMER_FAMILIES)


def apply(pipe: Any, config: PABConfig) -> Handle:
    check(pipe, config)
    window = (config.window_low_t, config.window_high_t)

    def install(model: Any, tracker: Any) -> None:
        dcfg = PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=config.self_attention_skip_range,
            spatial_attention_timestep_skip_range=window,
            cross_attention_block_skip_range=config.cross_attention_skip_range,
            cross_attention_timestep_skip_range=window,
            current_timestep_callback=tracker.timestep,
        )
        apply_pyramid_attention_broadcast(model, dcfg)

    return tracked_hooks_handle(pipe, "pab", install)


SPEC = register(
    MethodSpec(
        name="pab",
        config=PABConfig,
        apply=apply,
        check=check,
        stage=50,
        group="feature_cache",
        paper="Pyramid Attention Broadcast, Zhao et al. 2024 (arXiv:2408.12588); diffusers PAB",
        families=TRANSFORMER_FAMILIES,
        summary="Reuse attention outputs for a few steps in the middle of sampling.",
    )
)

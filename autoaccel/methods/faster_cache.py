"""FasterCache: reuse attention outputs across steps, extrapolated from the last two computed ones.

Follows Lv et al., "FasterCache: Training-Free Video Diffusion Model Acceleration with High Quality"
(arXiv:2410.19355), through diffusers' ``apply_faster_cache``. Its CFG-branch reuse needs a splittable
``[uncond, cond]`` batch, which FLUX (separate CFG calls) does not have: here it reuses attention only.
"""

from __future__ import annotations

from typing import Any

from diffusers.hooks import FasterCacheConfig as DiffusersFasterCacheConfig
from diffusers.hooks import apply_faster_cache
from pydantic import Field

from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._hooks import tracked_hooks_handle
from ._pipeline import require_family

# diffusers' FasterCache (experimental) targets video transformers; on our image families it runs on FLUX only.
# SD3 fails inside its attention hook (IndexError when the unconditional half is skipped), PixArt and DiT fail on
# their attention outputs (TypeError): see docs/methods.md.
FAMILIES = ("flux",)


class FasterCacheConfig(MethodConfig):
    """Knobs of `faster_cache`. Larger skip ranges and thresholds: faster, lower quality."""

    attention_skip_range: int = Field(
        ge=1, le=10, **knob(2, "Recompute attention every N steps inside the window.", low=2, high=5)
    )
    attention_skip_below_t: float = Field(
        ge=0,
        le=1000,
        **knob(681.0, "Attention is reused only at timesteps below this (0-1000 scale).", low=300.0, high=900.0),
    )


def check(pipe: Any, config: FasterCacheConfig) -> None:
    require_family(pipe, "faster_cache", FAMILIES)


def apply(pipe: Any, config: FasterCacheConfig) -> Handle:
    check(pipe, config)

    def install(model: Any, tracker: Any) -> None:
        dcfg = DiffusersFasterCacheConfig(
            spatial_attention_block_skip_range=config.attention_skip_range,
            spatial_attention_timestep_skip_range=(-1, config.attention_skip_below_t),
            current_timestep_callback=tracker.timestep,
            attention_weight_callback=lambda _: 0.5,
            tensor_format="BCHW",
            # FLUX runs CFG as separate denoiser calls, not as a batch diffusers' hook could split.
            is_guidance_distilled=True,
        )
        apply_faster_cache(model, dcfg)

    return tracked_hooks_handle(pipe, "faster_cache", install)


SPEC = register(
    MethodSpec(
        name="faster_cache",
        config=FasterCacheConfig,
        apply=apply,
        check=check,
        stage=50,
        group="feature_cache",
        paper="FasterCache, Lv et al. 2024 (arXiv:2410.19355); diffusers FasterCache",
        families=FAMILIES,
        summary="Reuse attention outputs across steps (FasterCache's attention path).",
    )
)

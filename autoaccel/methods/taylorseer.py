"""TaylorSeer: forecast cached features with a Taylor expansion instead of recomputing them.

Follows Liu et al., "From Reusing to Forecasting: Accelerating Diffusion Models with TaylorSeers" (arXiv:2503.06923),
through diffusers' ``apply_taylorseer_cache``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache
from pydantic import Field

from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._hooks import tracked_hooks_handle
from ._pipeline import TRANSFORMER_FAMILIES, require_family

_ATTENTION_PATTERN = r"(transformer_blocks|single_transformer_blocks)\.\d+\.attn\d?"


class TaylorSeerConfig(MethodConfig):
    """Knobs of `taylorseer`. Longer ``interval``: faster, lower quality; higher ``order``: better forecasts."""

    interval: int = Field(
        ge=1, le=20, **knob(4, "Steps between full computations; 1 computes every step.", low=2, high=8)
    )
    order: int = Field(
        ge=0, le=4, **knob(1, "Order of the Taylor expansion (0 reuses the last features).", low=0, high=2)
    )
    warmup_steps: int = Field(
        ge=0, le=1000, **knob(3, "Initial steps always computed (gather derivatives).", low=1, high=8)
    )
    cooldown_from_step: int | None = Field(
        default=None, ge=1, le=1000, description="From this step on, compute every step (None: never)."
    )
    lite: bool = Field(False, description="Lite variant: forecast only the output projection, skip all blocks.")
    factors_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Precision of the stored Taylor factors."
    )


def check(pipe: Any, config: TaylorSeerConfig) -> None:
    require_family(pipe, "taylorseer", TRANSFORMER_FAMILIES)


def apply(pipe: Any, config: TaylorSeerConfig) -> Handle:
    check(pipe, config)
    ts_config = TaylorSeerCacheConfig(
        cache_interval=config.interval,
        disable_cache_before_step=config.warmup_steps,
        disable_cache_after_step=config.cooldown_from_step,
        max_order=config.order,
        taylor_factors_dtype=getattr(torch, config.factors_dtype),
        use_lite_mode=config.lite,
        # diffusers' default patterns miss the `attn1`/`attn2` modules of PixArt/DiT blocks.
        cache_identifiers=[_ATTENTION_PATTERN],
    )
    return tracked_hooks_handle(pipe, "taylorseer", lambda model, _: apply_taylorseer_cache(model, ts_config))


SPEC = register(
    MethodSpec(
        name="taylorseer",
        config=TaylorSeerConfig,
        apply=apply,
        check=check,
        stage=50,
        group="feature_cache",
        paper="TaylorSeer, Liu et al. 2025 (arXiv:2503.06923); diffusers TaylorSeerCache",
        families=TRANSFORMER_FAMILIES,
        summary="Forecast attention outputs between full steps with a Taylor expansion.",
    )
)

"""MagCache: skip steps while the accumulated change of residual magnitudes stays small.

Follows Ma et al., "MagCache: Fast Video Generation with Magnitude-Aware Cache" (arXiv:2506.09045), through diffusers'
``apply_mag_cache``. The magnitude ratios are model-specific: `calibrate` measures them for a pipeline and a call.
"""

from __future__ import annotations

import contextlib
import inspect
import io
from typing import Any

from diffusers.hooks import MagCacheConfig as DiffusersMagCacheConfig
from diffusers.hooks import apply_mag_cache
from pydantic import Field

from ..errors import NotApplicableError
from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._hooks import tracked_hooks_handle
from ._pipeline import TRANSFORMER_FAMILIES, denoiser, require_family


class MagCacheConfig(MethodConfig):
    """Knobs of `magcache`. Higher ``threshold`` / ``max_skip_steps``: faster, lower quality."""

    threshold: float = Field(
        ge=0.0,
        le=2.0,
        **knob(0.06, "Accumulated magnitude error allowed before recomputing.", low=0.01, high=0.5, log=True),
    )
    max_skip_steps: int = Field(
        ge=1, le=20, **knob(3, "Most consecutive skipped steps (K in the paper).", low=1, high=6)
    )
    retention_ratio: float = Field(
        ge=0.0, le=1.0, **knob(0.2, "Fraction of initial steps never skipped.", low=0.0, high=0.5)
    )
    mag_ratios: list[float] | None = Field(
        default=None,
        min_length=2,
        max_length=1000,
        description="Per-step magnitude ratios from `autoaccel.methods.magcache.calibrate`; their length is the "
        "number of steps they were measured at (diffusers interpolates to it).",
    )


def check(pipe: Any, config: MagCacheConfig) -> None:
    require_family(pipe, "magcache", TRANSFORMER_FAMILIES)
    if config.mag_ratios is None:
        raise NotApplicableError(
            "magcache needs `mag_ratios` measured on this model: "
            "`autoaccel.methods.magcache.calibrate(pipe, **call_kwargs)` returns them"
        )


def apply(pipe: Any, config: MagCacheConfig) -> Handle:
    check(pipe, config)
    dcfg = DiffusersMagCacheConfig(
        threshold=config.threshold,
        max_skip_steps=config.max_skip_steps,
        retention_ratio=config.retention_ratio,
        num_inference_steps=len(config.mag_ratios),
        mag_ratios=list(config.mag_ratios),
    )
    return tracked_hooks_handle(pipe, "magcache", lambda model, _: apply_mag_cache(model, dcfg))


def calibrate(pipe: Any, **call_kwargs: Any) -> list[float]:
    """Run ``pipe(**call_kwargs)`` once with nothing skipped and return the per-step magnitude ratios.

    The step count is ``call_kwargs["num_inference_steps"]``, else the default of the pipeline's ``__call__``.
    """
    require_family(pipe, "magcache", TRANSFORMER_FAMILIES)
    steps = call_kwargs.get("num_inference_steps")
    if steps is None:
        param = inspect.signature(type(pipe).__call__).parameters.get("num_inference_steps")
        steps = param.default if param is not None else None
        call_kwargs = {**call_kwargs, "num_inference_steps": steps}
    if not isinstance(steps, int) or steps < 2:
        raise ValueError("calibrate needs num_inference_steps >= 2 in the call kwargs")
    dcfg = DiffusersMagCacheConfig(calibrate=True, num_inference_steps=steps)
    handle = tracked_hooks_handle(pipe, "magcache_calibration", lambda model, _: apply_mag_cache(model, dcfg))
    model = denoiser(pipe)
    ratios: list[float] = []
    try:
        for module in model.modules():
            registry = getattr(module, "_diffusers_hook", None)
            hook = registry.get_hook("mag_cache_block_hook") if registry is not None else None
            if hook is not None and getattr(hook, "is_tail", False):
                original = hook._perform_calibration_step

                def record(state: Any, residual: Any, _original: Any = original, _hook: Any = hook) -> None:
                    _original(state, residual)
                    context = _hook.state_manager._context
                    if context is None or context.name == "cond":  # the conditional branch only
                        ratios.append(float(state.calibration_ratios[-1]))

                hook._perform_calibration_step = record
        with contextlib.redirect_stdout(io.StringIO()):  # diffusers prints the ratios; we return them
            pipe(**call_kwargs)
    finally:
        handle.remove()
    if not ratios:
        raise NotApplicableError("magcache calibration recorded no ratios: the tail block hook never ran")
    return ratios[:steps]


SPEC = register(
    MethodSpec(
        name="magcache",
        config=MagCacheConfig,
        apply=apply,
        check=check,
        stage=50,
        group="feature_cache",
        paper="MagCache, Ma et al. 2025 (arXiv:2506.09045); diffusers MagCache",
        families=TRANSFORMER_FAMILIES,
        summary="Skip steps while accumulated residual-magnitude change stays under a threshold.",
    )
)

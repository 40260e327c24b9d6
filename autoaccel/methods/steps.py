"""Step schedule: fewer denoising steps, and the scheduler's timestep spacing or shift.

Fewer steps is the first thing users try and a strong baseline; spacing and shift follow "Common Diffusion Noise
Schedules and Sample Steps are Flawed" (Lin et al. 2023, arXiv:2305.08891) and SD3's resolution-dependent shift
(Esser et al. 2024, arXiv:2403.03206). Applied through the scheduler: the pipeline gets a reconfigured copy of its
scheduler whose ``set_timesteps`` uses ``num_inference_steps`` whatever the call asked for.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..errors import NotApplicableError
from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._pipeline import ALL_FAMILIES


class StepsConfig(MethodConfig):
    """Knobs of `steps`. Fewer steps: proportionally faster, lower quality."""

    num_inference_steps: int | None = Field(
        ge=1, le=1000, **knob(None, "Steps actually run, whatever the call asks for (None: as called).", low=1, high=50)
    )
    timestep_spacing: Literal["linspace", "leading", "trailing"] | None = Field(
        None, description="Scheduler timestep spacing (schedulers with a `timestep_spacing` setting)."
    )
    shift: float | None = Field(
        default=None, ge=0.1, le=20.0, description="Flow-matching sigma shift (schedulers with a static `shift`)."
    )


def check(pipe: Any, config: StepsConfig) -> None:
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None or not hasattr(scheduler, "set_timesteps"):
        raise NotApplicableError(f"steps: {type(pipe).__name__} has no scheduler")
    cfg = scheduler.config
    if config.timestep_spacing is not None and "timestep_spacing" not in cfg:
        raise NotApplicableError(f"steps: {type(scheduler).__name__} has no timestep_spacing setting")
    if config.shift is not None:
        if "shift" not in cfg:
            raise NotApplicableError(f"steps: {type(scheduler).__name__} has no shift setting")
        if cfg.get("use_dynamic_shifting"):
            raise NotApplicableError(
                f"steps: {type(scheduler).__name__} shifts dynamically with the resolution, so `shift` has no effect"
            )


def _resample(values: Any, n: int) -> list[float]:
    values = np.asarray(values, dtype=np.float64)
    m = len(values)
    if m > 1 and np.allclose(values, np.linspace(1.0, 1.0 / m, m)):  # FLUX-style default sigmas: rebuild exactly
        return np.linspace(1.0, 1.0 / n, n).tolist()
    return np.interp(np.linspace(0, m - 1, n), np.arange(m), values).tolist()


def _fixed_steps(scheduler: Any, n: int) -> None:
    original = scheduler.set_timesteps

    @functools.wraps(original)  # pipelines inspect the signature for `sigmas` / `timesteps` support
    def set_timesteps(num_inference_steps: int | None = None, device: Any = None, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("sigmas") is not None:
            kwargs["sigmas"] = _resample(kwargs["sigmas"], n)
        if kwargs.get("timesteps") is not None:
            kwargs["timesteps"] = [int(round(t)) for t in _resample(kwargs["timesteps"], n)]
        if kwargs.get("sigmas") is None and kwargs.get("timesteps") is None:
            num_inference_steps = n
        return original(num_inference_steps, device, *args, **kwargs)

    scheduler.set_timesteps = set_timesteps


def apply(pipe: Any, config: StepsConfig) -> Handle:
    check(pipe, config)
    original = pipe.scheduler
    overrides: dict[str, Any] = {}
    if config.timestep_spacing is not None:
        overrides["timestep_spacing"] = config.timestep_spacing
    if config.shift is not None:
        overrides["shift"] = config.shift
    scheduler = type(original).from_config(original.config, **overrides)
    if config.num_inference_steps is not None:
        _fixed_steps(scheduler, config.num_inference_steps)
    pipe.scheduler = scheduler

    def undo() -> None:
        pipe.scheduler = original

    return Handle("steps", undo)


SPEC = register(
    MethodSpec(
        name="steps",
        config=StepsConfig,
        apply=apply,
        check=check,
        stage=0,
        group="schedule",
        paper="Step reduction; spacing after Lin et al. 2023 (arXiv:2305.08891); shift after SD3 (arXiv:2403.03206)",
        families=ALL_FAMILIES,
        summary="Run fewer steps and/or change the scheduler's timestep spacing or shift.",
    )
)

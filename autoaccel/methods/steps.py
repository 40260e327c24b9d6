"""Step schedule: fewer denoising steps, a higher-order solver, and the scheduler's timestep spacing or shift.

Fewer steps is the first thing users try and a strong baseline. A multistep solver reuses the previous steps' model
outputs to take larger steps at no extra model calls: UniPC (Zhao et al. 2023, arXiv:2302.04867) or DPM-Solver++
(Lu et al. 2022, arXiv:2211.01095), both from diffusers, configured for flow matching when the pipeline's scheduler is
a flow-matching one. Spacing and shift follow "Common Diffusion Noise Schedules and Sample Steps are Flawed"
(Lin et al. 2023, arXiv:2305.08891) and SD3's resolution-dependent shift (Esser et al. 2024, arXiv:2403.03206).
Applied through the scheduler: the pipeline gets a reconfigured copy of its scheduler whose ``set_timesteps`` uses
``num_inference_steps`` whatever the call asked for.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Literal

import numpy as np
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
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
    solver: Literal["unipc", "dpmsolver++"] | None = Field(
        **knob(
            None,
            "Multistep solver replacing the scheduler (None: keep it). Same model calls per step, smaller error.",
            choices=[None, "unipc"],
        )
    )
    solver_order: int = Field(2, ge=1, le=3, description="Order of the multistep solver (2 is diffusers' default).")


def check(pipe: Any, config: StepsConfig) -> None:
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None or not hasattr(scheduler, "set_timesteps"):
        raise NotApplicableError(f"steps: {type(pipe).__name__} has no scheduler")
    cfg = scheduler.config
    if config.solver is not None and _solver_config(scheduler) is None:
        raise NotApplicableError(
            f"steps: solver {config.solver!r} cannot replace {type(scheduler).__name__} "
            "(needs an epsilon/v-prediction scheduler with betas or a flow-matching scheduler)"
        )
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


_SOLVERS = {"unipc": UniPCMultistepScheduler, "dpmsolver++": DPMSolverMultistepScheduler}
_FLOW_KEYS = (
    "use_dynamic_shifting",
    "time_shift_type",
    "base_shift",
    "max_shift",
    "base_image_seq_len",
    "max_image_seq_len",
)


def _solver_config(scheduler: Any) -> dict[str, Any] | None:
    """Config overrides that make a multistep solver equivalent to ``scheduler``'s noise schedule, or None."""
    cfg = scheduler.config
    if "shift" in cfg and "use_dynamic_shifting" in cfg:  # flow matching (FlowMatchEuler/Heun...)
        out = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": float(cfg["shift"])}
        out.update({k: cfg[k] for k in _FLOW_KEYS if k in cfg})
        return out
    if "beta_schedule" in cfg and cfg.get("prediction_type", "epsilon") in ("epsilon", "v_prediction", "sample"):
        return {}
    return None


def _solver(original: Any, config: StepsConfig) -> Any:
    overrides = _solver_config(original) or {}
    cls = _SOLVERS[config.solver]
    extra = {"algorithm_type": "dpmsolver++"} if config.solver == "dpmsolver++" else {}
    accepted = inspect.signature(cls.__init__).parameters  # other keys would only log "will be ignored"
    merged = {**original.config, **overrides, **extra, "solver_order": config.solver_order, "final_sigmas_type": "zero"}
    scheduler = cls.from_config({k: v for k, v in merged.items() if k in accepted})
    for key in _FLOW_KEYS:  # pipelines read these from the scheduler config to compute `mu`
        if key in original.config and key not in scheduler.config:
            scheduler.register_to_config(**{key: original.config[key]})
    _translate_calls(scheduler)
    return scheduler


def _translate_calls(scheduler: Any) -> None:
    """Accept the pipeline's ``sigmas``/``mu`` even where the solver's ``set_timesteps`` does not."""
    original = scheduler.set_timesteps
    accepted = set(inspect.signature(original).parameters)
    dynamic = bool(scheduler.config.get("use_dynamic_shifting"))

    @functools.wraps(original)
    def set_timesteps(num_inference_steps: int | None = None, device: Any = None, **kwargs: Any) -> Any:
        mu = kwargs.pop("mu", None)
        if dynamic:
            kwargs["mu"] = mu
        sigmas = kwargs.get("sigmas")
        if sigmas is not None and "sigmas" not in accepted:  # the default flow sigmas: let the solver build its own
            kwargs.pop("sigmas")
            num_inference_steps = len(sigmas)
        return original(num_inference_steps, device, **kwargs)

    scheduler.set_timesteps = set_timesteps


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
    if config.solver is not None:
        scheduler = _solver(type(original).from_config(original.config, **overrides), config)
    else:
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
        paper=(
            "Step reduction; UniPC (arXiv:2302.04867) / DPM-Solver++ (arXiv:2211.01095) solvers; spacing after "
            "Lin et al. 2023 (arXiv:2305.08891); shift after SD3 (arXiv:2403.03206)"
        ),
        families=ALL_FAMILIES,
        summary="Run fewer steps, with a multistep solver and/or another timestep spacing or shift.",
    )
)

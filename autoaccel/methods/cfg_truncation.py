"""CFG truncation: stop evaluating the unconditional branch after a fraction of the steps.

Follows Adaptive Guidance (Castillo et al., "Adaptive Guidance: Training-free Acceleration of Conditional Diffusion
Models", arXiv:2312.12487): late in sampling the conditional and guided predictions agree, so the unconditional
evaluation can be dropped. For pipelines that batch CFG (``[uncond, cond]``) the denoiser then runs on the
conditional half only and its output is duplicated, which makes the guidance formula return the conditional
prediction; for FLUX's true CFG (a second denoiser call) the conditional output of the step is returned instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from pydantic import Field

from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._pipeline import ALL_FAMILIES, COND_HALF, denoiser, family, require_family
from ._tracker import StepTracker, acquire_tracker

_HOOK = "autoaccel.cfg_truncation"


class CFGTruncationConfig(MethodConfig):
    """Knobs of `cfg_truncation`. Lower ``after_fraction``: faster (up to 2x per truncated step), lower quality."""

    after_fraction: float = Field(
        ge=0.0,
        le=1.0,
        **knob(
            0.6, "Fraction of the steps after which the unconditional branch is dropped (1: never).", low=0.2, high=0.95
        ),
    )


def _split(value: Any, batch: int, half: int) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return value.chunk(2)[half]
    if isinstance(value, dict):
        return {k: _split(v, batch, half) for k, v in value.items()}
    return value


def _duplicate(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return torch.cat([output, output])
    if isinstance(output, tuple):
        return tuple(_duplicate(o) for o in output)
    if hasattr(output, "sample"):
        output.sample = torch.cat([output.sample, output.sample])
        return output
    return output


class _TruncationHook(ModelHook):
    def __init__(self, config: CFGTruncationConfig, tracker: StepTracker, fam: str, stats: dict[str, int]) -> None:
        super().__init__()
        self.config, self.tracker, self.family, self.stats = config, tracker, fam, stats
        self.last_cond: Any = None

    def _truncated(self) -> bool:
        n = self.tracker.num_steps
        return n is not None and self.tracker.step >= math.ceil(self.config.after_fraction * n)

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        tracker = self.tracker
        tracker.enter(args, kwargs)
        try:
            if self.family == "flux":  # true CFG: the unconditional call is the second call of the step
                if tracker.branch > 0 and self.last_cond is not None and self._truncated():
                    self.stats["skipped_uncond_calls"] += 1
                    return self.last_cond
                out = self.fn_ref.original_forward(*args, **kwargs)
                if tracker.branch == 0:
                    self.last_cond = out
                return out
            hidden = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
            batch = hidden.shape[0]
            # Under batched CFG both halves of the latent input are the same tensor.
            if self._truncated() and batch % 2 == 0 and torch.equal(hidden[: batch // 2], hidden[batch // 2 :]):
                half = COND_HALF[self.family]
                args = tuple(_split(a, batch, half) for a in args)
                kwargs = {k: _split(v, batch, half) for k, v in kwargs.items()}
                self.stats["halved_calls"] += 1
                return _duplicate(self.fn_ref.original_forward(*args, **kwargs))
            return self.fn_ref.original_forward(*args, **kwargs)
        finally:
            tracker.exit()


def check(pipe: Any, config: CFGTruncationConfig) -> None:
    require_family(pipe, "cfg_truncation", ALL_FAMILIES)


def apply(pipe: Any, config: CFGTruncationConfig) -> Handle:
    check(pipe, config)
    model = denoiser(pipe)
    stats = {"skipped_uncond_calls": 0, "halved_calls": 0}
    tracker = acquire_tracker(pipe)
    hook = _TruncationHook(config, tracker, family(pipe), stats)
    unsubscribe = tracker.on_reset(lambda: setattr(hook, "last_cond", None))
    registry = HookRegistry.check_if_exists_or_initialize(model)
    registry.register_hook(hook, _HOOK)

    def undo() -> None:
        registry.remove_hook(_HOOK, recurse=False)
        unsubscribe()
        tracker.release()

    return Handle("cfg_truncation", undo, stats)


SPEC = register(
    MethodSpec(
        name="cfg_truncation",
        config=CFGTruncationConfig,
        apply=apply,
        check=check,
        stage=60,
        group="guidance",
        paper="Adaptive Guidance, Castillo et al. 2023 (arXiv:2312.12487)",
        families=ALL_FAMILIES,
        summary="Drop the unconditional CFG branch for the last steps.",
        activity=("skipped_uncond_calls", "halved_calls"),
    )
)

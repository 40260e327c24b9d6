"""Where the denoising loop is: step index, number of steps and CFG branch, shared by all methods on a pipeline.

One `StepTracker` per pipeline sits as a hook on the denoiser. A new generation is detected when the scheduler's
``timesteps`` tensor is a new object (every pipeline calls ``scheduler.set_timesteps`` at the start of a call); the
step index advances when the timestep changes; calls at the same timestep are further CFG branches (FLUX's true CFG
runs the conditional call, then the unconditional one). It also gives diffusers' stateful cache hooks the
``CacheContext`` that only some pipelines set, and resets their state between generations.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import CacheContext, _set_cache_context

from ._pipeline import denoiser

_HOOK_NAME = "autoaccel.step_tracker"
_TRACKERS: weakref.WeakKeyDictionary[Any, StepTracker] = weakref.WeakKeyDictionary()


def _timestep_value(args: tuple, kwargs: dict) -> float | None:
    t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    if isinstance(t, torch.Tensor):
        return float(t.flatten()[0]) if t.numel() else None
    return float(t) if isinstance(t, (int, float)) else None


class StepTracker:
    """Step index, step count and branch of the current denoiser call. Get one with `acquire_tracker`."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = weakref.ref(pipe)
        self.model = denoiser(pipe)
        self.step = -1
        self.branch = 0
        self.num_steps: int | None = None
        self._last_t: float | None = None
        self._timesteps_ref: Any = None
        self._users = 0
        self._depth = 0
        self._reset_callbacks: list[Callable[[], None]] = []

    # -- lifetime -------------------------------------------------------------------------------------------------
    def on_reset(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` at the start of every generation; returns a function that unregisters it."""
        self._reset_callbacks.append(callback)
        return lambda: self._reset_callbacks.remove(callback) if callback in self._reset_callbacks else None

    def release(self) -> None:
        """Drop one user; the hook is removed with the last one."""
        self._users -= 1
        if self._users <= 0:
            HookRegistry.check_if_exists_or_initialize(self.model).remove_hook(_HOOK_NAME, recurse=False)
            pipe = self._pipe()
            if pipe is not None:
                _TRACKERS.pop(pipe, None)

    # -- called around every denoiser call ------------------------------------------------------------------------
    def enter(self, args: tuple, kwargs: dict) -> None:
        """Update the position for a denoiser call. Nested calls (a method hook on the denoiser) are no-ops."""
        self._depth += 1
        if self._depth > 1:
            return
        pipe = self._pipe()
        timesteps = getattr(getattr(pipe, "scheduler", None), "timesteps", None)
        if timesteps is not self._timesteps_ref:
            self._timesteps_ref = timesteps
            self.reset()
        self.num_steps = len(timesteps) if timesteps is not None else None
        t = _timestep_value(args, kwargs)
        if t is None or t != self._last_t:
            self.step += 1
            self.branch = 0
            self._last_t = t
        else:
            self.branch += 1
        context = CacheContext(
            "cond" if self.branch == 0 else "uncond", step_index=self.step, num_inference_steps=self.num_steps
        )
        _set_cache_context(self.model, context)

    def timestep(self) -> float:
        """The scheduler timestep (0-1000 scale) of the current step; 1000 before the first step."""
        pipe = self._pipe()
        timesteps = getattr(getattr(pipe, "scheduler", None), "timesteps", None)
        if timesteps is None or not 0 <= self.step < len(timesteps):
            return 1000.0
        return float(timesteps[self.step])

    def reset(self) -> None:
        """Forget the loop position and every method's per-generation state."""
        self.step, self.branch, self._last_t = -1, 0, None
        HookRegistry.check_if_exists_or_initialize(self.model).reset_stateful_hooks(recurse=True)
        for callback in list(self._reset_callbacks):
            callback()

    def exit(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            _set_cache_context(self.model, None)


class _TrackerHook(ModelHook):
    def __init__(self, tracker: StepTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        self.tracker.enter(args, kwargs)
        try:
            return self.fn_ref.original_forward(*args, **kwargs)
        finally:
            self.tracker.exit()


def acquire_tracker(pipe: Any) -> StepTracker:
    """The pipeline's tracker, installing its hook on first use. Pair every call with ``tracker.release()``."""
    tracker = _TRACKERS.get(pipe)
    if tracker is None:
        tracker = StepTracker(pipe)
        HookRegistry.check_if_exists_or_initialize(tracker.model).register_hook(_TrackerHook(tracker), _HOOK_NAME)
        _TRACKERS[pipe] = tracker
    tracker._users += 1
    return tracker

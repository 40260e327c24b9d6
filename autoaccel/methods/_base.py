"""The method contract: a typed config, an applicability check, and an apply function returning a removable handle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

logger = logging.getLogger("autoaccel")


class MethodConfig(BaseModel):
    """Base of every method config: strict types, unknown keys rejected, immutable.

    Each field documents its range with ``ge``/``le`` (or a ``Literal``) and, in ``json_schema_extra``, the range the
    search explores: ``{"search": {"low": ..., "high": ..., "log": bool, "step": ...}}`` or
    ``{"search": {"choices": [...]}}``. Fields without a ``search`` entry are not searched.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def knob(default: Any, description: str, **search: Any) -> dict[str, Any]:
    """Keyword arguments for ``pydantic.Field`` describing a searchable knob (``search`` goes to the JSON schema)."""
    extra = {"search": search} if search else None
    return {"default": default, "description": description, "json_schema_extra": extra}


class Handle:
    """Undoes one applied method. ``remove()`` restores the pipeline exactly; calling it twice is a no-op.

    ``stats`` holds deterministic counters the method updates while it runs (e.g. ``computed_blocks`` and
    ``skipped_blocks``) so tests and the search can see how much compute it saved.
    """

    def __init__(self, name: str, undo: Callable[[], None], stats: dict[str, int] | None = None) -> None:
        self.name = name
        self._undo: Callable[[], None] | None = undo
        self.stats: dict[str, int] = stats if stats is not None else {}

    @property
    def active(self) -> bool:
        return self._undo is not None

    def remove(self) -> None:
        if self._undo is None:
            return
        undo, self._undo = self._undo, None
        undo()

    def __repr__(self) -> str:
        return f"Handle({self.name!r}, active={self.active}, stats={self.stats})"


class CompositeHandle(Handle):
    """Handles of several methods, removed in reverse order of application."""

    def __init__(self, handles: list[Handle], on_remove: Callable[[], None] | None = None) -> None:
        self.handles = list(handles)
        self._on_remove = on_remove
        super().__init__("+".join(h.name for h in handles) or "none", self._remove_all)

    def _remove_all(self) -> None:
        for handle in reversed(self.handles):
            handle.remove()
        if self._on_remove is not None:
            self._on_remove()

    @property
    def stats(self) -> dict[str, dict[str, int]]:  # type: ignore[override]
        return {h.name: h.stats for h in self.handles}

    @stats.setter
    def stats(self, value: Any) -> None:  # the base class assigns it; the composite derives it
        pass


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Args:
        name: Registry name used in recipes.
        config: The pydantic config class.
        apply: ``apply(pipe, config) -> Handle``; must leave the pipeline untouched when it raises.
        check: ``check(pipe, config)`` raises `NotApplicableError` saying why the method cannot apply.
        stage: Application order; lower stages are applied first (and removed last).
        group: Methods of the same group are mutually exclusive (e.g. one feature cache at a time).
        paper: The paper or reference implementation the method follows.
        families: Pipeline families it supports (documentation and tests).
        summary: One line for listings.
        conflicts: Methods it cannot be combined with beyond its group.
        activity: ``Handle.stats`` counters that show the method saved work; if all stay 0 during a generation the
            method did nothing (e.g. a cache that never hit), which the search uses to prune decorative methods.
        flop_neutral: Its gain does not show as fewer denoiser FLOPs (quantization, kernels, compilation), so the
            search must not prune it as inert.
    """

    name: str
    config: type[MethodConfig]
    apply: Callable[[Any, MethodConfig], Handle]
    check: Callable[[Any, MethodConfig], None]
    stage: int
    group: str | None = None
    paper: str = ""
    families: tuple[str, ...] = ()
    summary: str = ""
    conflicts: tuple[str, ...] = field(default=())
    activity: tuple[str, ...] = ()
    flop_neutral: bool = False

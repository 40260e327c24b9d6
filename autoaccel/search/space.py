"""The search space, assembled from the method registry: each method's documented knob ranges, filtered by what
applies to the pipeline, one categorical choice per compatibility group (define-by-run, so a method's knobs are
suggested only when the method is chosen)."""

from __future__ import annotations

import logging
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from .. import methods as M
from ..errors import NotApplicableError, RecipeError

logger = logging.getLogger("autoaccel")
NONE = "none"


@dataclass(frozen=True)
class Knob:
    """One searchable parameter of a method."""

    method: str
    name: str
    kind: str  # "int" | "float" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method}.{self.name}"

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log, step=self.step)


@dataclass
class SearchSpace:
    """Groups of mutually exclusive methods, each method's knobs, and params fixed for the whole search."""

    groups: dict[str, list[str]]
    knobs: dict[str, list[Knob]]
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)  # method -> why it is not searched

    def suggest(self, trial: optuna.Trial) -> list[tuple[str, dict[str, Any]]]:
        """Define-by-run: pick one method (or none) per group, then that method's knobs."""
        chosen = []
        for group, candidates in self.groups.items():
            name = trial.suggest_categorical(f"group.{group}", [NONE, *candidates])
            if name == NONE:
                continue
            params = dict(self.fixed.get(name, {}))
            params.update({k.name: k.suggest(trial) for k in self.knobs.get(name, [])})
            chosen.append((name, params))
        return chosen

    def params_of(self, methods: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
        """Optuna params (for `study.enqueue_trial`) that reproduce ``methods``; unknown knobs are dropped."""
        out: dict[str, Any] = {f"group.{g}": NONE for g in self.groups}
        for name, params in methods:
            group = M.get(name).group or name
            if name not in self.groups.get(group, []):
                raise RecipeError(f"method {name!r} is not in this search space", field="methods")
            out[f"group.{group}"] = name
            for knob in self.knobs.get(name, []):
                if knob.name in params:
                    out[knob.key] = params[knob.name]
        return out


def _knob(method: str, name: str, info: Any, override: Any = None) -> Knob | None:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    search = dict(extra.get("search") or {})
    if override is not None:
        if (
            isinstance(override, (list, tuple))
            and len(override) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in override)
            and "choices" not in search
        ):
            search.update(low=override[0], high=override[1])
        else:
            search = {"choices": list(override)}
    if not search:
        return None
    if "choices" in search:
        return Knob(method, name, "categorical", choices=tuple(search["choices"]))
    base = [a for a in typing.get_args(info.annotation) if a is not type(None)] or [info.annotation]
    kind = "int" if base[0] is int else "float"
    return Knob(method, name, kind, search["low"], search["high"], bool(search.get("log")), search.get("step"))


def _applicable_choices(pipe: Any, spec: M.MethodSpec, knob: Knob, fixed: Mapping[str, Any]) -> Knob | None:
    """Drop categorical choices that cannot apply here (e.g. fp8 without a capable GPU)."""
    keep = []
    for choice in knob.choices:
        try:
            spec.check(pipe, spec.config(**{**fixed, knob.name: choice}))
            keep.append(choice)
        except (NotApplicableError, ValueError):
            continue
    return Knob(knob.method, knob.name, "categorical", choices=tuple(keep)) if keep else None


def build_space(
    pipe: Any,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    ranges: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Mapping[str, Any]] | None = None,
    workload_steps: int | None = None,
) -> SearchSpace:
    """The space for ``pipe``.

    Args:
        include: Methods to search (default: all that apply). Unknown names raise `RecipeError`.
        exclude: Methods never to search.
        ranges: Overrides per knob, ``{"block_cache.threshold": (0.02, 0.2), "quantize.scheme": ["int8_dynamic"]}``.
        fixed: Params fixed for a method in every trial (e.g. calibrated ``magcache.mag_ratios``).
        workload_steps: The workload's step count; ``steps.num_inference_steps`` is searched below it.
    """
    ranges, fixed = dict(ranges or {}), {k: dict(v) for k, v in (fixed or {}).items()}
    names = list(include) if include is not None else M.available()
    for name in [*names, *exclude, *fixed]:
        M.get(name)  # RecipeError for unknown names
    for key in ranges:
        method, _, knob = key.partition(".")
        if knob not in M.get(method).config.model_fields:
            raise RecipeError(f"unknown knob {key!r}", field="ranges")
    space = SearchSpace(groups={}, knobs={}, fixed=fixed)
    for name in names:
        if name in exclude:
            continue
        spec = M.get(name)
        try:
            spec.check(pipe, spec.config(**fixed.get(name, {})))
        except (NotApplicableError, ValueError) as e:
            space.excluded[name] = str(e)
            logger.info("not searching %s: %s", name, e)
            continue
        knobs = []
        for knob_name, info in spec.config.model_fields.items():
            if knob_name in fixed.get(name, {}):
                continue
            knob = _knob(name, knob_name, info, ranges.get(f"{name}.{knob_name}"))
            if knob is not None and knob.key == "steps.num_inference_steps" and workload_steps:
                high = max(1, min(int(knob.high), workload_steps - 1))
                knob = Knob(name, knob_name, "int", min(int(knob.low), high), high)
            if knob is not None and knob.kind == "categorical":
                knob = _applicable_choices(pipe, spec, knob, fixed.get(name, {}))
            if knob is not None:
                knobs.append(knob)
        defaults = spec.config(**fixed.get(name, {}))
        if all(k.kind == "categorical" and k.choices == (getattr(defaults, k.name),) for k in knobs):
            space.excluded[name] = "no searchable setting other than its default applies here"
            continue
        space.groups.setdefault(spec.group or name, []).append(name)
        space.knobs[name] = knobs
    return space

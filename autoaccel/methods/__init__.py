"""Training-free acceleration methods: a registry of typed, removable methods.

Each method lives in its own module and registers a `MethodSpec`. `apply_methods` validates a combination against
the compatibility rules, checks every method's applicability *before* touching the pipeline, applies them in stage
order, and rolls back on failure so nothing is left half-applied.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Sequence
from typing import Any

from ..errors import RecipeError
from ._base import CompositeHandle, Handle, MethodConfig, MethodSpec, knob

__all__ = [
    "CompositeHandle",
    "Handle",
    "MethodConfig",
    "MethodSpec",
    "apply_methods",
    "available",
    "check_combination",
    "check_methods",
    "get",
    "knob",
]

# Method modules, imported once on first registry access (importing one registers it).
_MODULES = (
    "steps",
    "quantize",
    "attention_backend",
    "quant_attention",
    "sparse_attention",
    "block_cache",
    "taylorseer",
    "magcache",
    "faster_cache",
    "pab",
    "deep_cache",
    "cfg_truncation",
    "compile",
)
_REGISTRY: dict[str, MethodSpec] = {}
_APPLIED: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> dict[str, MethodSpec]:
    for name in _MODULES:  # cheap once imported; a module registers itself on first import
        importlib.import_module(f"{__name__}.{name}")
    return _REGISTRY


def available() -> list[str]:
    """Names of all registered methods, in application order."""
    order = {name: i for i, name in enumerate(_MODULES)}  # ties within a stage: the order of _MODULES
    return [s.name for s in sorted(_load().values(), key=lambda s: (s.stage, order.get(s.name, len(order))))]


def get(name: str) -> MethodSpec:
    """The spec of a method; `RecipeError` for an unknown name."""
    specs = _load()
    if name not in specs:
        raise RecipeError(f"unknown method {name!r}; available: {', '.join(available())}", field="name")
    return specs[name]


def check_combination(names: Sequence[str]) -> None:
    """Raise `RecipeError` if these methods cannot be used together (duplicates, one per group, explicit conflicts)."""
    seen: dict[str, str] = {}
    for i, name in enumerate(names):
        spec = get(name)
        if name in names[:i]:
            raise RecipeError(f"method {name!r} appears twice", field=f"methods.{i}.name")
        if spec.group is not None and spec.group in seen:
            raise RecipeError(
                f"{name!r} and {seen[spec.group]!r} are both `{spec.group}` methods; use one at a time",
                field=f"methods.{i}.name",
            )
        for other in names[:i]:
            if other in spec.conflicts or name in get(other).conflicts:
                raise RecipeError(f"{name!r} cannot be combined with {other!r}", field=f"methods.{i}.name")
        if spec.group is not None:
            seen[spec.group] = name


def apply_methods(pipe: Any, methods: Sequence[tuple[str, MethodConfig]]) -> CompositeHandle:
    """Apply methods in stage order; all-or-nothing. Returns a handle that removes them all.

    Raises:
        RecipeError: an incompatible combination, also with methods already applied to this pipeline.
        NotApplicableError: a method does not apply to this pipeline (nothing was changed).
    """
    check_methods(pipe, methods)
    specs = [(get(name), cfg) for name, cfg in methods]
    handles: list[Handle] = []
    try:
        for spec, cfg in sorted(specs, key=lambda sc: sc[0].stage):
            handles.append(spec.apply(pipe, cfg))
    except Exception:
        for handle in reversed(handles):
            handle.remove()
        raise
    names = [h.name for h in handles]
    _APPLIED.setdefault(pipe, []).extend(names)

    def forget() -> None:
        applied = _APPLIED.get(pipe, [])
        for name in names:
            if name in applied:
                applied.remove(name)

    return CompositeHandle(handles, on_remove=forget)


def check_methods(pipe: Any, methods: Sequence[tuple[str, MethodConfig]]) -> None:
    """What `apply_methods` checks before changing anything: the combination (with methods already applied to this
    pipeline), each config's type and each method's applicability.

    Raises:
        RecipeError: an incompatible combination or a config of the wrong type.
        NotApplicableError: a method does not apply to this pipeline.
    """
    check_combination([*_APPLIED.get(pipe, []), *(name for name, _ in methods)])
    for name, cfg in methods:
        spec = get(name)
        if not isinstance(cfg, spec.config):
            raise RecipeError(f"expected a {spec.config.__name__}, got {type(cfg).__name__}", field=spec.name)
        spec.check(pipe, cfg)


def check_applicable(pipe: Any, name: str, config: MethodConfig | None = None) -> None:
    """Raise `NotApplicableError` if method ``name`` (default config if none) cannot apply to ``pipe``."""
    spec = get(name)
    spec.check(pipe, config if config is not None else spec.config())

"""Plain values in and out of the database: hardware and workload identities, JSON cleaning, read-only records.

Rows never leave a session; callers get these frozen dataclasses instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRecordError
from .models import HardwareProfileRow, RecipeRow, Study, Trial

DEFAULT_REVISION = "main"

# Keys read from a hardware profile dict (first present wins; `autoaccel.hardware.HardwareProfile` field names come
# first). Everything is also kept verbatim in ``raw``.
_HARDWARE_KEYS = {
    "name": ("name", "device_name", "gpu_name", "cpu_name"),
    "device_kind": ("device_kind", "kind", "device_type", "device"),
    "arch_class": ("arch_class",),
    "driver": ("driver_version", "driver"),
    "cuda_version": ("cuda_version", "cuda"),
    "compute_capability": ("compute_capability",),
    "torch_version": ("torch_version", "torch"),
    "diffusers_version": ("diffusers_version", "diffusers"),
}
_MEMORY_KEYS = (("memory_bytes", 1), ("total_memory", 1), ("memory_gib", 2**30), ("memory_gb", 10**9))
# What makes two measurements "on the same hardware": the device and the software stack that runs the kernels.
_STACK = (
    "key",
    "device_kind",
    "name",
    "driver",
    "cuda_version",
    "compute_capability",
    "torch_version",
    "diffusers_version",
)


def to_json(value: Any, field: str) -> Any:
    """``value`` as plain JSON (dict/list/str/int/float/bool/None); NaN and infinities become None.

    Numpy-style scalars are converted through the ``numbers`` ABCs.

    Raises:
        InvalidRecordError: A value is not JSON (naming its dotted path), or a key is not a string.
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRecordError(f"{field}: keys must be strings, got {key!r}")
            out[key] = to_json(item, f"{field}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(item, f"{field}.{i}") for i, item in enumerate(value)]
    raise InvalidRecordError(f"{field}: {type(value).__name__} {value!r} cannot be stored as JSON")


def fingerprint(data: Any, length: int = 64) -> str:
    """SHA-256 hex (first ``length`` digits) of canonical JSON (sorted keys, no spaces): equal data, equal prints."""
    text = json.dumps(to_json(data, "fingerprint"), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def workload_fingerprint(workload: Any) -> str:
    """The fingerprint a workload is stored and looked up under.

    A `autoaccel.workload.Workload` (or anything with ``fingerprint()``) gives its own; a dict that validates as a
    `Workload` gives that workload's, so both spellings agree; any other dict the SHA-256 of its canonical JSON.

    Raises:
        InvalidRecordError: Neither a mapping nor an object with ``fingerprint()``.
    """
    if callable(getattr(workload, "fingerprint", None)):
        return str(workload.fingerprint())
    if not isinstance(workload, Mapping):
        raise InvalidRecordError(f"workload must be a dict or a Workload, got {type(workload).__name__}")
    try:
        from ..workload import Workload

        return Workload.from_dict(workload).fingerprint()
    except (ImportError, ValueError, TypeError, OSError):  # not a full Workload (e.g. a recipe's summary): hash it
        return fingerprint(workload)


def workload_spec(workload: Any) -> dict[str, Any]:
    """A workload as JSON (``to_dict()`` of a `Workload`)."""
    if isinstance(workload, Mapping):
        return to_json(workload, "workload")
    if callable(getattr(workload, "to_dict", None)):
        return to_json(workload.to_dict(), "workload")
    raise InvalidRecordError(f"workload must be a dict or a Workload, got {type(workload).__name__}")


def hardware_dict(hardware: Any) -> dict[str, Any]:
    """A hardware profile as a JSON dict with its device ``key``: a mapping, or an object with ``to_dict()`` or
    ``model_dump()`` (and ``key()``), such as `autoaccel.hardware.HardwareProfile`.

    A mapping without ``key`` gets `HardwareProfile.key` when it validates as a profile, else a slug of its name.

    Raises:
        InvalidRecordError: Not a mapping or profile, or no device name.
    """
    if isinstance(hardware, Mapping):
        data = dict(hardware)
    else:
        dump = getattr(hardware, "to_dict", None) or getattr(hardware, "model_dump", None)
        if not callable(dump):
            raise InvalidRecordError(f"hardware must be a dict or a HardwareProfile, got {type(hardware).__name__}")
        data = dict(dump())
        key = getattr(hardware, "key", None)
        if "key" not in data and key is not None:
            data["key"] = key() if callable(key) else key
    data = to_json(data, "hardware")
    name = _first(data, _HARDWARE_KEYS["name"])
    if not name:
        raise InvalidRecordError(f"hardware: no device name (one of {', '.join(_HARDWARE_KEYS['name'])}) in {data}")
    if not data.get("key"):
        data["key"] = _profile_key(data) or re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
    return data


def _profile_key(data: dict[str, Any]) -> str | None:
    try:
        from ..hardware import HardwareProfile

        return HardwareProfile.model_validate({k: v for k, v in data.items() if k != "key"}).key()
    except (ImportError, ValueError, TypeError):  # not a complete profile
        return None


def hardware_columns(data: Mapping[str, Any]) -> dict[str, Any]:
    """Column values of `HardwareProfileRow` from a `hardware_dict`; ``fingerprint`` covers device and software."""
    columns = {column: _first(data, keys) for column, keys in _HARDWARE_KEYS.items()}
    columns = {k: (v if v is None or isinstance(v, str) else _text(v)) for k, v in columns.items()}
    columns["device_kind"] = columns["device_kind"] or "unknown"
    columns["key"] = str(data["key"])
    memory = None
    for key, scale in _MEMORY_KEYS:
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            memory = int(value * scale)
            break
    stack = fingerprint({k: columns[k] for k in _STACK}, 32)
    return {**columns, "fingerprint": stack, "memory_bytes": memory, "raw": dict(data)}


def _first(data: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((data[k] for k in keys if data.get(k) not in (None, "")), None)


def _text(value: Any) -> str:
    # compute capability may come as [8, 0]
    return ".".join(str(v) for v in value) if isinstance(value, list) else str(value)


@dataclass(frozen=True)
class StudyInfo:
    id: int
    name: str
    optuna_study_name: str | None
    model_id: str
    revision: str
    hardware_key: str
    hardware_fingerprint: str
    workload_fingerprint: str | None
    budget: str | None
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, study: Study) -> StudyInfo:
        return cls(
            id=study.id,
            name=study.name,
            optuna_study_name=study.optuna_study_name,
            model_id=study.model.model_id,
            revision=study.model.revision,
            hardware_key=study.hardware.key,
            hardware_fingerprint=study.hardware.fingerprint,
            workload_fingerprint=study.workload.fingerprint if study.workload else None,
            budget=study.budget,
            status=study.status,
            created_at=study.created_at,
            updated_at=study.updated_at,
        )


@dataclass(frozen=True)
class TrialInfo:
    id: int
    study_id: int
    number: int
    optuna_trial_id: int | None
    state: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    speedup: float | None
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, trial: Trial) -> TrialInfo:
        names = ("id", "study_id", "number", "optuna_trial_id", "state", "params", "metrics", "speedup", "error")
        return cls(**{n: getattr(trial, n) for n in names}, started_at=trial.started_at, finished_at=trial.finished_at)


@dataclass(frozen=True)
class RecipeInfo:
    """A stored recipe's metadata (`RecipeDB.get_recipe` returns the recipe itself)."""

    id: int
    model_id: str
    revision: str
    pipeline_class: str | None
    hardware_key: str
    hardware_fingerprint: str
    hardware_name: str
    arch_class: str | None
    workload_fingerprint: str | None
    budget: str | None
    speedup: float
    quality: dict[str, Any]
    validated: bool
    source: str
    study_id: int | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: RecipeRow) -> RecipeInfo:
        hardware: HardwareProfileRow = row.hardware
        return cls(
            id=row.id,
            model_id=row.model.model_id,
            revision=row.model.revision,
            pipeline_class=row.model.pipeline_class,
            hardware_key=hardware.key,
            hardware_fingerprint=hardware.fingerprint,
            hardware_name=hardware.name,
            arch_class=hardware.arch_class,
            workload_fingerprint=row.workload.fingerprint if row.workload else None,
            budget=row.budget,
            speedup=row.speedup,
            quality=row.quality,
            validated=row.validated,
            source=row.source,
            study_id=row.study_id,
            created_at=row.created_at,
        )

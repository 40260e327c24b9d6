"""The validated numbers a recipe carries in ``Recipe.metrics``: reading them, and checking them against a budget.

Expected shape (JSON; every part optional)::

    {
      "speedup": {"median": 2.1, "ci95": [1.9, 2.3]},     # or a bare number, with "speedup_ci": [lo, hi] beside it
      "quality": {
        "lpips": {"mean": 0.05, "ci95": [0.04, 0.06], "p90": 0.08, "max": 0.11, "per_image": [0.04, 0.06, ...]},
        "psnr": {"mean": 31.2, "ci_low": 30.1, "ci_high": 32.3}
      },
      "per_image": {"lpips": [0.04, 0.06, ...]}             # optional, as `Measurement.recipe_metrics()` writes it
    }

Quality entries may also sit at the top level (``{"speedup": 1.8, "lpips": {"mean": 0.05}}``). A bare number is a
mean and a bare list is per-image values. Per-image values may be called ``per_image`` or ``values``. Aggregates are
``mean``, ``median``, ``min``, ``max`` and ``pNN`` (``p50``/``p0``/``p100`` read as median/min/max). Metric names go
through `autoaccel.metrics.canonical_name`; the strings ``"Infinity"``, ``"-Infinity"`` and ``"NaN"`` (how
`Measurement` writes non-finite floats, e.g. the PSNR of identical images) are read as floats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import metrics as _metrics
from ..budget import Budget

__all__ = ["MetricStats", "RecipeMetrics", "budget_violations", "parse_metrics"]

_AGG = re.compile(r"mean|median|min|max|p(\d{1,3})")
_AGG_ALIASES = {"p50": "median", "p0": "min", "p100": "max"}
_NON_FINITE = {"infinity": math.inf, "inf": math.inf, "-infinity": -math.inf, "-inf": -math.inf, "nan": math.nan}


@dataclass(frozen=True)
class MetricStats:
    """One quality metric of a recipe.

    Args:
        aggregates: Aggregation name (``mean``, ``median``, ``min``, ``max``, ``p90``, ...) -> value.
        ci95: 95% confidence interval of the mean, when reported.
        per_image: One value per validation image, when reported.
    """

    aggregates: Mapping[str, float] = field(default_factory=dict)
    ci95: tuple[float, float] | None = None
    per_image: tuple[float, ...] | None = None

    def value(self, agg: str = "mean") -> float | None:
        """The aggregate ``agg``, computed from ``per_image`` when there are values, else as reported (or None)."""
        if self.per_image:
            clause = _clause_for(agg)
            if clause is not None:
                return clause.aggregate(list(self.per_image))
        return self.aggregates.get(agg)


@dataclass(frozen=True)
class RecipeMetrics:
    """The numbers of ``Recipe.metrics`` in one shape: see the module docstring for what is read.

    Args:
        speedup: Median (else mean) speedup over the baseline, or None.
        speedup_ci95: Its 95% confidence interval, when reported.
        quality: Canonical metric name -> `MetricStats`.
    """

    speedup: float | None = None
    speedup_ci95: tuple[float, float] | None = None
    quality: Mapping[str, MetricStats] = field(default_factory=dict)


def parse_metrics(data: Mapping[str, Any] | None) -> RecipeMetrics:
    """Read ``Recipe.metrics`` (any shape of the module docstring). Unreadable entries are skipped, never raised."""
    if not isinstance(data, Mapping):
        return RecipeMetrics()
    speedup, speedup_ci = _speedup(data)
    quality_src = data.get("quality")
    if not isinstance(quality_src, Mapping):
        quality_src = {k: v for k, v in data.items() if _metrics.canonical_name(str(k)) is not None}
    extra_values = data.get("per_image") if isinstance(data.get("per_image"), Mapping) else {}
    extra = {_canonical(k): v for k, v in extra_values.items()}
    quality: dict[str, MetricStats] = {}
    for name, raw in quality_src.items():
        canonical = _canonical(name)
        stats = _stats(raw, extra.get(canonical))
        if stats is not None:
            quality[canonical] = stats
    for name, values in extra.items():
        if name not in quality and (per_image := _values(values)):
            quality[name] = MetricStats(per_image=per_image)
    return RecipeMetrics(speedup=speedup, speedup_ci95=speedup_ci, quality=quality)


def budget_violations(budget: str | Budget, metrics: RecipeMetrics | Mapping[str, Any] | None) -> tuple[str, ...]:
    """Why a recipe's metrics do not meet ``budget``: one line per failing clause (empty: the budget is met).

    A clause is evaluated on the metric's per-image values when the recipe has them (exactly as `Budget.check`
    would), else on the reported aggregate. A clause whose metric or aggregate is not reported fails: the recipe
    cannot be shown to meet it.

    Raises:
        BudgetError: ``budget`` does not parse.
    """
    stats_by_metric = metrics.quality if isinstance(metrics, RecipeMetrics) else parse_metrics(metrics).quality
    values = {m: s.per_image for m, s in stats_by_metric.items() if s.per_image}
    return Budget.parse(budget).stored_violations(values, {m: s.aggregates for m, s in stats_by_metric.items()})


def _canonical(name: Any) -> str:
    return _metrics.canonical_name(str(name)) or str(name).lower()


def _clause_for(agg: str) -> Any:
    from ..budget import Clause

    try:
        return Clause("lpips", "<", 0.0, agg)  # only its aggregation is used
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _NON_FINITE.get(value.strip().lower())
    return None


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = _number(value[0]), _number(value[1])
        if low is not None and high is not None:
            return low, high
    return None


def _values(value: Any) -> tuple[float, ...] | None:
    if not isinstance(value, (list, tuple)) or not value:
        return None
    numbers = [_number(v) for v in value]
    return None if any(n is None for n in numbers) else tuple(n for n in numbers if n is not None)


def _ci(stats: Mapping[str, Any]) -> tuple[float, float] | None:
    for key in ("ci95", "ci"):
        if (pair := _pair(stats.get(key))) is not None:
            return pair
    low, high = _number(stats.get("ci_low")), _number(stats.get("ci_high"))
    return (low, high) if low is not None and high is not None else None


def _speedup(data: Mapping[str, Any]) -> tuple[float | None, tuple[float, float] | None]:
    raw = data.get("speedup")
    value, ci = None, None
    if isinstance(raw, Mapping):
        value = next((v for k in ("median", "p50", "mean", "value") if (v := _number(raw.get(k))) is not None), None)
        ci = _ci(raw)
    else:
        value = _number(raw)
    ci = ci or _pair(data.get("speedup_ci")) or _pair(data.get("speedup_ci95"))
    if value is None or not math.isfinite(value) or value <= 0:
        return None, None
    return value, ci


def _stats(raw: Any, extra_values: Any) -> MetricStats | None:
    per_image = _values(extra_values)
    if (number := _number(raw)) is not None:
        return MetricStats(aggregates={"mean": number}, per_image=per_image)
    if isinstance(raw, (list, tuple)):
        values = _values(raw)
        return MetricStats(per_image=values) if values else None
    if not isinstance(raw, Mapping):
        return None
    aggregates: dict[str, float] = {}
    for key, value in raw.items():
        match = _AGG.fullmatch(str(key).lower())
        number = _number(value)
        if match is None or number is None or (match.group(1) is not None and int(match.group(1)) > 100):
            continue
        name = str(key).lower()
        if match.group(1) is not None:
            name = _AGG_ALIASES.get(f"p{int(match.group(1))}", f"p{int(match.group(1))}")
        aggregates.setdefault(name, number)
    per_image = _values(raw.get("per_image")) or _values(raw.get("values")) or per_image
    if not aggregates and not per_image:
        return None
    return MetricStats(aggregates=aggregates, ci95=_ci(raw), per_image=per_image)

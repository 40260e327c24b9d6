"""Quality budgets: ``Budget.parse("p90(lpips)<0.15 and psnr>=30")``.

Grammar (whitespace and case are free; metric names may be any alias in `autoaccel.metrics`)::

    budget := clause (("and" | "&" | ",") clause)*
    clause := [aggregation "("] metric [")"] ("<" | "<=" | ">" | ">=") number
    aggregation := mean (the default) | median | min | max | p0 .. p100 (percentile, linear interpolation)
    number := finite decimal, optionally signed, optionally with an exponent (1e-3)

A budget is a conjunction: every clause must hold. The operator must point the way the metric improves (``lpips<``,
``psnr>``): ``lpips>0.1`` would ask for worse images and is rejected. ``str(budget)`` is canonical (lowercase names,
``mean`` omitted, ``p50``/``p0``/``p100`` written ``median``/``min``/``max``, clauses joined by `` and ``) and
``Budget.parse(str(b)) == b``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoaccel import metrics
from autoaccel.errors import BudgetError

OPERATORS = ("<", "<=", ">", ">=")
AGGREGATIONS = ("mean", "median", "min", "max", "pNN")
_AGG_ALIASES = {"p50": "median", "p0": "min", "p100": "max"}
_PERCENTILE = re.compile(r"p(\d{1,3})")
_TOKEN = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)"
    r"|(?P<op><=|>=|==|!=|=<|=>|<>|<|>|=)"
    r"|(?P<lparen>\()|(?P<rparen>\))"
    r"|(?P<sep>&&|&|,)",
    re.ASCII,
)
_NOT_NUMBERS = {
    "nan": "NaN is not a valid bound",
    "inf": "the bound must be finite",
    "infinity": "the bound must be finite",
}


def _canonical_agg(agg: str) -> str:
    if not isinstance(agg, str):
        raise BudgetError(f"an aggregation must be a string, got {agg!r}")
    agg = agg.strip().lower()
    if agg in ("mean", "median", "min", "max"):
        return agg
    match = _PERCENTILE.fullmatch(agg)
    if match and int(match.group(1)) <= 100:
        name = f"p{int(match.group(1))}"
        return _AGG_ALIASES.get(name, name)
    raise BudgetError(f"unknown aggregation {agg!r}; use mean, median, min, max or p0..p100 (e.g. p90)")


def _canonical_metric(name: str) -> str:
    if not isinstance(name, str):
        raise BudgetError(f"a metric name must be a string, got {name!r}")
    canonical = metrics.canonical_name(name)
    if canonical is None:
        raise BudgetError(f"unknown metric {name!r}; known metrics: {', '.join(metrics.available())}")
    return canonical


def _check_direction(metric: str, op: str) -> None:
    if op not in OPERATORS:
        raise BudgetError(f"unsupported operator {op!r}; use <, <=, > or >=")
    higher = metrics.get(metric).higher_is_better
    if higher != op.startswith(">"):
        want, way = ("> or >=", "higher") if higher else ("< or <=", "lower")
        raise BudgetError(f"{metric} is better when {way}, so a budget bounds it with {want}, not {op!r}")


def _check_bound(bound: Any) -> float:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise BudgetError(f"the bound must be a number, got {bound!r}")
    value = float(bound)
    if math.isnan(value):
        raise BudgetError("NaN is not a valid bound")
    if math.isinf(value):
        raise BudgetError("the bound must be finite")
    return value


def _format_number(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    if lo == hi or ordered[lo] == ordered[hi]:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class Clause:
    """One bound: ``agg(metric) op bound``. Validated and canonicalised on construction (raises `BudgetError`).

    Args:
        metric: Metric name or alias (stored canonical).
        op: One of ``<``, ``<=``, ``>``, ``>=``, in the metric's direction of improvement.
        bound: Finite number.
        agg: ``mean`` (default), ``median``, ``min``, ``max`` or ``pNN`` (0 <= NN <= 100).
    """

    metric: str
    op: str
    bound: float
    agg: str = "mean"

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", _canonical_metric(self.metric))
        object.__setattr__(self, "agg", _canonical_agg(self.agg))
        object.__setattr__(self, "bound", _check_bound(self.bound))
        _check_direction(self.metric, self.op)

    def __str__(self) -> str:
        target = self.metric if self.agg == "mean" else f"{self.agg}({self.metric})"
        return f"{target}{self.op}{_format_number(self.bound)}"

    def aggregate(self, values: Sequence[float]) -> float:
        """Applies the aggregation to per-image values (NaN if any value is NaN)."""
        if not values:
            raise BudgetError(f"no values to aggregate for {self.metric}")
        if any(math.isnan(v) for v in values):
            return math.nan
        if self.agg == "mean":
            finite = all(math.isfinite(v) for v in values)
            return (math.fsum(values) if finite else sum(values)) / len(values)
        if self.agg == "min":
            return min(values)
        if self.agg == "max":
            return max(values)
        return _percentile(values, 50.0 if self.agg == "median" else float(self.agg[1:]))

    def margin(self, value: float) -> float:
        """How far ``value`` is from satisfying the clause: ``<= 0`` iff satisfied (Optuna's constraint convention).

        ``value - bound`` for upper bounds, ``bound - value`` for lower bounds; a value exactly on a strict bound
        gives the smallest positive float, and NaN gives ``inf``.
        """
        if math.isnan(value):
            return math.inf
        diff = value - self.bound if self.op.startswith("<") else self.bound - value
        if diff == 0 and len(self.op) == 1:
            return math.ulp(0.0)
        return diff


@dataclass(frozen=True)
class ClauseResult:
    """A clause evaluated on a measurement: the aggregated ``value`` and its ``margin`` (<= 0 means satisfied)."""

    clause: Clause
    value: float
    margin: float

    @property
    def ok(self) -> bool:
        return self.margin <= 0

    def __str__(self) -> str:
        return f"{self.clause} ({'ok' if self.ok else 'violated'}: {self.value:.6g})"


@dataclass(frozen=True)
class Budget:
    """A conjunction of `Clause` s. Build with `Budget.parse`; ``str()`` gives the canonical text."""

    clauses: tuple[Clause, ...]

    def __post_init__(self) -> None:
        clauses = tuple(self.clauses)
        if not clauses:
            raise BudgetError("a budget needs at least one clause")
        if not all(isinstance(c, Clause) for c in clauses):
            raise BudgetError("Budget.clauses must be Clause objects; use Budget.parse for text")
        object.__setattr__(self, "clauses", clauses)

    @classmethod
    def parse(cls, text: str | Budget) -> Budget:
        """Parses a budget string (a `Budget` is returned unchanged).

        Raises:
            BudgetError: With ``position`` (0-based offset in ``text``) of the first problem.
        """
        if isinstance(text, Budget):
            return text
        if not isinstance(text, str):
            raise BudgetError(f"a budget must be a string, got {type(text).__name__}")
        return cls(tuple(_Parser(text).parse()))

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.clauses)

    def __repr__(self) -> str:
        return f"Budget.parse({str(self)!r})"

    @property
    def metrics(self) -> tuple[str, ...]:
        """Canonical names of the metrics the budget needs, in order of first use."""
        return tuple(dict.fromkeys(c.metric for c in self.clauses))

    def evaluate(self, measurement: Any) -> tuple[ClauseResult, ...]:
        """Evaluates every clause on ``measurement``.

        Args:
            measurement: Mapping from metric name (any alias) to per-image values (a sequence, a 1-D tensor or a single
                number), or an object with such a mapping in ``.per_image``.

        Raises:
            BudgetError: A needed metric is missing or has no values.
        """
        per_image = _per_image(measurement)
        results = []
        for clause in self.clauses:
            value = clause.aggregate(_values(per_image, clause.metric))
            results.append(ClauseResult(clause, value, clause.margin(value)))
        return tuple(results)

    def margins(self, measurement: Any) -> tuple[float, ...]:
        """One margin per clause (``<= 0`` satisfied), e.g. as Optuna ``constraints_func`` values; may be +-inf."""
        return tuple(r.margin for r in self.evaluate(measurement))

    def violations(self, measurement: Any) -> tuple[ClauseResult, ...]:
        """The clauses that ``measurement`` does not satisfy (empty when it meets the budget)."""
        return tuple(r for r in self.evaluate(measurement) if not r.ok)

    def check(self, measurement: Any) -> bool:
        """Whether ``measurement`` satisfies every clause."""
        return not self.violations(measurement)

    def stored_violations(
        self, values: Mapping[str, Sequence[float]], aggregates: Mapping[str, Mapping[str, float]]
    ) -> tuple[str, ...]:
        """Why stored numbers (a recipe's, the database's) miss the budget: one line per failing clause.

        A clause is evaluated on its metric's per-image ``values`` when there are any (exactly as `check` would), else
        on the stored aggregate (``p50``/``p0``/``p100`` accepted for median/min/max). A clause whose metric or
        aggregate was not stored fails: the numbers cannot show that it is met. Metric names must be canonical.
        """
        problems = []
        for clause in self.clauses:
            if values.get(clause.metric):
                value: float | None = clause.aggregate([float(v) for v in values[clause.metric]])
            elif clause.metric in aggregates:
                stored = aggregates[clause.metric]
                value = next((stored[k] for k in _AGG_KEYS.get(clause.agg, (clause.agg,)) if k in stored), None)
                if value is None:
                    have = ", ".join(stored) or "nothing"
                    problems.append(f"{clause}: the recipe reports no {clause.agg} of {clause.metric} (it has: {have})")
                    continue
            else:
                problems.append(f"{clause}: the recipe reports no {clause.metric}")
                continue
            if clause.margin(float(value)) > 0:
                problems.append(f"{clause}: measured {value:.4g}")
        return tuple(problems)


_AGG_KEYS = {"median": ("median", "p50"), "min": ("min", "p0"), "max": ("max", "p100")}


def _per_image(measurement: Any) -> Mapping[str, Any]:
    per_image = getattr(measurement, "per_image", measurement)
    if not isinstance(per_image, Mapping):
        raise BudgetError(
            f"a measurement must be a mapping metric -> per-image values, or have one in .per_image; "
            f"got {type(measurement).__name__}"
        )
    return per_image


def _values(per_image: Mapping[str, Any], metric: str) -> list[float]:
    raw = per_image.get(metric)
    if raw is None:
        raw = next((v for k, v in per_image.items() if metrics.canonical_name(str(k)) == metric), None)
    if raw is None:
        raise BudgetError(f"the measurement has no values for {metric!r} (it has: {', '.join(map(str, per_image))})")
    if hasattr(raw, "tolist"):
        raw = raw.tolist()
    values = [float(v) for v in (raw if isinstance(raw, Iterable) else [raw])]
    if not values:
        raise BudgetError(f"the measurement has an empty list of values for {metric!r}")
    return values


@dataclass(frozen=True)
class _Token:
    kind: str  # ws, num, name, op, lparen, rparen, sep, end
    text: str
    pos: int


class _Parser:
    """Recursive-descent parser over `_TOKEN` tokens; every error carries the offending token's position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize()
        self.i = 0

    def error(self, message: str, pos: int) -> BudgetError:
        return BudgetError(message, text=self.text, position=pos)

    def _tokenize(self) -> list[_Token]:
        tokens, pos = [], 0
        while pos < len(self.text):
            match = _TOKEN.match(self.text, pos)
            if match is None:
                raise self.error(f"unexpected character {self.text[pos]!r}", pos)
            if match.lastgroup != "ws":
                tokens.append(_Token(match.lastgroup or "", match.group(), pos))
            pos = match.end()
        tokens.append(_Token("end", "", len(self.text)))
        return tokens

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    @staticmethod
    def describe(token: _Token) -> str:
        return "the end of the budget" if token.kind == "end" else repr(token.text)

    def parse(self) -> list[Clause]:
        if self.peek().kind == "end":
            raise self.error("empty budget; write e.g. 'lpips<0.1'", 0)
        clauses = [self.clause()]
        while True:
            token = self.take()
            if token.kind == "end":
                return clauses
            if token.kind == "sep" or (token.kind == "name" and token.text.lower() == "and"):
                clauses.append(self.clause())
            elif token.kind == "name" and token.text.lower() == "or":
                raise self.error(
                    "'or' is not supported: a budget is clauses that must all hold, joined by 'and'", token.pos
                )
            else:
                raise self.error(f"expected 'and' or the end of the budget, got {self.describe(token)}", token.pos)

    def clause(self) -> Clause:
        first = self.take()
        if first.kind != "name":
            raise self.error(f"expected a metric name, got {self.describe(first)}", first.pos)
        agg, metric = "mean", first
        if self.peek().kind == "lparen":
            try:
                agg = _canonical_agg(first.text)
            except BudgetError as err:
                raise self.error(str(err), first.pos) from None
            self.take()
            metric = self.take()
            if metric.kind != "name":
                raise self.error(f"expected a metric name, got {self.describe(metric)}", metric.pos)
            close = self.take()
            if close.kind != "rparen":
                raise self.error(f"expected ')', got {self.describe(close)}", close.pos)
        try:
            name = _canonical_metric(metric.text)
        except BudgetError as err:
            raise self.error(str(err), metric.pos) from None
        op = self.take()
        if op.kind != "op":
            raise self.error(f"expected a comparison (<, <=, >, >=) after {name}, got {self.describe(op)}", op.pos)
        try:
            _check_direction(name, op.text)
        except BudgetError as err:
            raise self.error(str(err), op.pos) from None
        number = self.take()
        if number.kind == "name" and number.text.lower() in _NOT_NUMBERS:
            raise self.error(_NOT_NUMBERS[number.text.lower()], number.pos)
        if number.kind != "num":
            raise self.error(f"expected a number after {op.text!r}, got {self.describe(number)}", number.pos)
        bound = float(number.text)
        if not math.isfinite(bound):
            raise self.error(f"the bound {number.text} is out of range (it must be finite)", number.pos)
        return Clause(name, op.text, bound, agg)

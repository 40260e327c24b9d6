"""The budget language: parsing, canonical printing, error positions, evaluation, and property-based round trips."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autoaccel import metrics
from autoaccel.budget import Budget, Clause
from autoaccel.errors import BudgetError

# --- parsing and canonical strings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("lpips<0.1", "lpips<0.1"),
        ("psnr>=30", "psnr>=30"),
        ("lpips<0.1 and ssim>0.9", "lpips<0.1 and ssim>0.9"),
        ("mean(lpips)<0.1", "lpips<0.1"),
        ("p90(lpips)<0.15", "p90(lpips)<0.15"),
        ("max(lpips)<0.2", "max(lpips)<0.2"),
        ("  MEAN ( LPIPS )  <=  1e-2 ", "lpips<=0.01"),
        ("p50(ms-ssim)>0.9 & clip>25, psnr>-3.5", "median(ms_ssim)>0.9 and clip_score>25 and psnr>-3.5"),
        ("P100(lpips)<=.5 AND p0(psnr)>20", "max(lpips)<=0.5 and min(psnr)>20"),
        ("p07(ssim)>0.80", "p7(ssim)>0.8"),
        ("lpips<0.1and psnr>30.0", "lpips<0.1 and psnr>30"),
        ("psnr>1.5e20", "psnr>1.5e+20"),
        ("lpips<1e-05", "lpips<1e-05"),
    ],
)
def test_parse_and_canonical_string(text, canonical):
    budget = Budget.parse(text)
    assert str(budget) == canonical
    assert Budget.parse(canonical) == budget
    assert Budget.parse(budget) is budget


def test_parsed_structure():
    budget = Budget.parse("p90(LPIPS) < 0.15 and psnr >= 30 and lpips<0.2")
    assert budget.clauses == (
        Clause("lpips", "<", 0.15, "p90"),
        Clause("psnr", ">=", 30.0),
        Clause("lpips", "<", 0.2, "mean"),
    )
    assert budget.metrics == ("lpips", "psnr")
    assert repr(budget) == "Budget.parse('p90(lpips)<0.15 and psnr>=30 and lpips<0.2')"
    assert hash(budget) == hash(Budget.parse(str(budget)))


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty budget"),
        ("   ", 0, "empty budget"),
        ("lpips", 5, "expected a comparison"),
        ("lpips<", 6, "expected a number"),
        ("lpips<nan", 6, "NaN"),
        ("psnr>NaN", 5, "NaN"),
        ("psnr>inf", 5, "finite"),
        ("lpips<1e999", 6, "finite"),
        ("lpips>0.1", 5, "better when lower"),
        ("psnr<=30", 4, "better when higher"),
        ("foo<1", 0, "unknown metric 'foo'"),
        ("lpips<0.1 and fid<3", 14, "unknown metric 'fid'"),
        ("lpips<0.1 junk", 10, "expected 'and'"),
        ("lpips<0.1 or psnr>30", 10, "'or' is not supported"),
        ("avg(lpips)<0.1", 0, "unknown aggregation 'avg'"),
        ("p101(lpips)<0.1", 0, "unknown aggregation"),
        ("p9999(lpips)<0.1", 0, "unknown aggregation"),
        ("lpips==0.1", 5, "unsupported operator '=='"),
        ("lpips=0.1", 5, "unsupported operator '='"),
        ("lpips!=0.1", 5, "unsupported operator"),
        ("lpips<0.1 and", 13, "expected a metric name"),
        ("lpips<0.1,,psnr>3", 10, "expected a metric name"),
        ("(lpips)<0.1", 0, "expected a metric name"),
        ("max(lpips<0.2", 9, "expected ')'"),
        ("max()<0.2", 4, "expected a metric name"),
        ("lpips<0.1$", 9, "unexpected character '$'"),
        ("lpips < 0.1 0.2", 12, "expected 'and'"),
        ("lpips<<0.1", 6, "expected a number"),
        ("lpips 0.1", 6, "expected a comparison"),
        ("lpips<abc", 6, "expected a number"),
        ("lpips<0.1e", 9, "expected 'and'"),
        ("psnr>30 and and ssim>0.9", 12, "unknown metric 'and'"),
        ("lpips<0.1 ∧ psnr>3", 10, "unexpected character"),
        ("max(lpips)(psnr)<3", 10, "expected a comparison"),
    ],
)
def test_junk_is_rejected_at_the_right_position(text, position, message):
    with pytest.raises(BudgetError, match=re.escape(message)) as err:
        Budget.parse(text)
    assert err.value.position == position
    assert err.value.text == text
    assert f"at position {position}" in str(err.value) or not text  # errors.py shows no caret for ""


def test_clause_validates_on_construction():
    assert Clause("MS-SSIM", ">", 0.9, "P50") == Clause("ms_ssim", ">", 0.9, "median")
    with pytest.raises(BudgetError, match="unknown metric"):
        Clause("fid", "<", 3)
    with pytest.raises(BudgetError, match="better when lower"):
        Clause("lpips", ">=", 0.1)
    with pytest.raises(BudgetError, match="unsupported operator"):
        Clause("lpips", "=", 0.1)
    with pytest.raises(BudgetError, match="NaN"):
        Clause("lpips", "<", math.nan)
    with pytest.raises(BudgetError, match="must be a number"):
        Clause("lpips", "<", "0.1")
    with pytest.raises(BudgetError, match="at least one clause"):
        Budget(())
    with pytest.raises(BudgetError, match="must be a string"):
        Budget.parse(0.1)
    assert issubclass(BudgetError, ValueError)


# --- evaluation ------------------------------------------------------------------------------------------------------


def test_check_margins_and_violations():
    budget = Budget.parse("p90(lpips)<0.15 and psnr>=30")
    good = {"lpips": [0.05, 0.1, 0.12], "psnr": [31.0, 33.0, 35.0]}
    assert budget.check(good)
    assert budget.margins(good) == pytest.approx((0.1 + 0.8 * 0.02 - 0.15, 30 - 33.0))
    assert budget.violations(good) == ()
    bad = {"LPIPS": torch.tensor([0.1, 0.12, 0.3]), "PSNR": np.array([29.0, 30.0, 31.0])}
    violated = budget.violations(bad)
    assert [str(r.clause) for r in violated] == ["p90(lpips)<0.15"]
    assert violated[0].value == pytest.approx(0.12 + 0.8 * 0.18)
    assert budget.margins(bad)[1] == 0.0  # psnr>=30 with mean exactly 30: satisfied, margin 0
    assert not budget.check(SimpleNamespace(per_image=bad))


def test_strict_bound_and_special_values():
    strict = Budget.parse("psnr>30")
    assert not strict.check({"psnr": [30.0]}) and strict.margins({"psnr": [30.0]})[0] > 0
    assert strict.check({"psnr": [math.inf, 31.0]}) and strict.margins({"psnr": [math.inf]})[0] == -math.inf
    assert Budget.parse("min(psnr)>30").check({"psnr": [math.inf, math.inf]})
    assert strict.margins({"psnr": [40.0, math.nan]}) == (math.inf,)
    assert Budget.parse("lpips<0.1").check({"lpips": 0.05})  # a single (already aggregated) number


def test_measurement_errors():
    budget = Budget.parse("lpips<0.1 and ssim>0.9")
    with pytest.raises(BudgetError, match="no values for 'ssim'"):
        budget.check({"lpips": [0.01]})
    with pytest.raises(BudgetError, match="empty list"):
        budget.check({"lpips": [], "ssim": [1.0]})
    with pytest.raises(BudgetError, match="must be a mapping"):
        budget.check([0.1, 0.9])


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30), st.integers(0, 100))
def test_percentiles_match_numpy(values, q):
    clause = Clause("psnr", ">", 0.0, f"p{q}")
    assert clause.aggregate(values) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


# --- property-based: round trips and junk ----------------------------------------------------------------------------

AGGS = st.one_of(st.sampled_from(["mean", "median", "min", "max"]), st.integers(0, 100).map(lambda q: f"p{q}"))
BOUNDS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**6), 10**6).map(float),
    st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False).map(float),
)


@st.composite
def clauses(draw) -> Clause:
    metric = draw(st.sampled_from(metrics.available()))
    ops = (">", ">=") if metrics.get(metric).higher_is_better else ("<", "<=")
    return Clause(metric, draw(st.sampled_from(ops)), draw(BOUNDS), draw(AGGS))


budgets = st.lists(clauses(), min_size=1, max_size=5).map(lambda cs: Budget(tuple(cs)))


@settings(max_examples=300, deadline=None)
@given(budgets)
def test_round_trip(budget):
    text = str(budget)
    assert Budget.parse(text) == budget
    assert str(Budget.parse(text)) == text


def _spelling(clause: Clause, draw) -> str:
    """An equivalent, non-canonical spelling: random case, spaces, explicit mean, aliases, number formats."""
    names = [clause.metric, *metrics.get(clause.metric).aliases]
    name = draw(st.sampled_from(names))
    name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    agg = clause.agg if clause.agg != "mean" or draw(st.booleans()) else None
    ws = st.sampled_from(["", " ", "  ", "\t"])
    target = f"{agg}{draw(ws)}({draw(ws)}{name}{draw(ws)})" if agg else name
    number = draw(st.sampled_from([repr(clause.bound), f"{clause.bound:.17e}", f"{clause.bound!r}".upper()]))
    return f"{draw(ws)}{target}{draw(ws)}{clause.op}{draw(ws)}{number}{draw(ws)}"


@settings(max_examples=300, deadline=None)
@given(budgets, st.data())
def test_equivalent_spellings_parse_to_the_same_budget(budget, data):
    parts = [_spelling(c, data.draw) for c in budget.clauses]
    seps = [data.draw(st.sampled_from([" and ", " AND ", "&", ",", " & ", "and "])) for _ in parts[1:]]
    text = parts[0] + "".join(s + p for s, p in zip(seps, parts[1:], strict=True))
    assert Budget.parse(text) == budget, text


def _parse_or_error(text: str) -> None:
    try:
        budget = Budget.parse(text)
    except BudgetError as err:
        assert err.position is not None and 0 <= err.position <= len(text), (text, err.position)
        assert err.text == text
    else:
        assert Budget.parse(str(budget)) == budget


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_random_text_raises_only_budget_errors(text):
    _parse_or_error(text)


@settings(max_examples=500, deadline=None)
@given(budgets, st.data())
def test_mutated_budgets_raise_only_budget_errors(budget, data):
    text = str(budget)
    junk = data.draw(st.text(alphabet="()<>=!&|,.-+eE0123456789 andorpnmaxlis\x00\n", min_size=1, max_size=4))
    cut = data.draw(st.integers(0, len(text)))
    drop = data.draw(st.integers(0, 3))
    _parse_or_error(text[:cut] + junk + text[cut + drop :])


@settings(max_examples=200, deadline=None)
@given(budgets, st.data())
def test_check_agrees_with_margins(budget, data):
    values = st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5)
    measurement = {m: data.draw(values) for m in budget.metrics}
    margins = budget.margins(measurement)
    assert len(margins) == len(budget.clauses)
    assert budget.check(measurement) == all(m <= 0 for m in margins)


def test_stored_violations_prefer_per_image_values_then_aggregates():
    budget = Budget.parse("lpips<0.1 and median(psnr)>30")
    # per-image values win over a (stale) stored mean; p50 stands in for median
    assert budget.stored_violations({"lpips": [0.05, 0.07]}, {"lpips": {"mean": 0.5}, "psnr": {"p50": 31.0}}) == ()
    problems = budget.stored_violations({}, {"lpips": {"mean": 0.2}})
    assert problems == ("lpips<0.1: measured 0.2", "median(psnr)>30: the recipe reports no psnr")
    assert budget.stored_violations({}, {"lpips": {"max": 0.01}, "psnr": {"median": 31.0}}) == (
        "lpips<0.1: the recipe reports no mean of lpips (it has: max)",
    )

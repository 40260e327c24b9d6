"""The benchmark scripts stay runnable: they are not run in CI (they measure time), so a cheap check of their
plumbing catches the breakage a refactor leaves behind."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DOCS = BENCHMARKS.parent / "docs"


@pytest.fixture
def bench_search(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_search

    return bench_search


def test_search_benchmark_renders_its_recorded_run(bench_search, tmp_path, monkeypatch):
    data = json.loads((DOCS / "bench_search.json").read_text())
    text = bench_search.render(data)
    for entry in data["budgets"]:
        assert f"| `{entry['budget']}` |" in text
    monkeypatch.setattr(bench_search, "DOCS", tmp_path)
    run = bench_search.Run(argparse.Namespace(print=False))  # a dataclass that saves after every phase
    run.data = data
    run.save()
    assert json.loads((tmp_path / "bench_search.json").read_text()) == data


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("bench_*.py")))
def test_benchmark_scripts_parse_their_arguments(script):
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout

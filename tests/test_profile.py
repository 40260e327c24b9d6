"""The profiler on the tiny FLUX pipeline: deterministic counters (FLOPs, method stats, cache hits), no wall clock."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from autoaccel.budget import Budget
from autoaccel.profiling import (
    Measurement,
    ProfileError,
    _cache,
    _flops,
    _timing,
    baseline_outputs,
    count_denoiser_flops,
    mean_interval,
    profile,
    speedup_interval,
    t_quantile,
)
from autoaccel.profiling import _run as run_module
from autoaccel.recipes import Recipe
from autoaccel.testing import default_call_kwargs
from autoaccel.workload import Workload

from ._pipes import assert_pristine, pipe_for

STEPS = 4


def _recipe(name: str = "block_cache", **params) -> dict:
    return {"schema_version": 1, "methods": [{"name": name, "params": params}]}


IDENTITY = _recipe(threshold=0.0)
AGGRESSIVE = _recipe(threshold=1.0, warmup_steps=1, max_consecutive_cached=8)


@pytest.fixture(scope="module")
def pipe():
    return pipe_for("flux")


@pytest.fixture(scope="module")
def workload():
    return Workload.from_call_kwargs(default_call_kwargs("flux", steps=STEPS), prompts=["a red cat", "a blue house"])


def _profile(pipe, recipe, workload, **kw):
    kw.setdefault("cache_dir", False)
    return profile(pipe, recipe, workload, repeats=2, warmup=1, progress=False, threads=1, **kw)


def _outputs(pipe, workload):
    return torch.cat([pipe(**workload.pipeline_kwargs([item])).images for item in workload.items()])


def test_identity_recipe_changes_nothing(pipe, workload):
    m = _profile(pipe, IDENTITY, workload)
    assert m.flops_ratio == 1.0 and m.baseline_flops == m.candidate_flops > 0
    assert m.per_image["lpips"] == [0.0, 0.0]
    assert m.per_image["psnr"] == [math.inf, math.inf]
    assert (m.quality["psnr"].mean, m.quality["psnr"].ci_low) == (math.inf, math.inf)
    blocks = 2 * STEPS * 5  # items x steps x (2 double + 3 single blocks)
    expected = {"computed_steps": 2 * STEPS, "cached_steps": 0, "computed_blocks": blocks, "skipped_blocks": 0}
    assert m.method_stats == {"block_cache": expected}
    assert m.baseline_latency.n == m.candidate_latency.n == 2 and len(m.candidate_latency.samples) == 2
    assert m.speedup == m.baseline_latency.median / m.candidate_latency.median
    assert (m.baseline_items_computed, m.baseline_items_cached) == (2, 0)
    assert m.workload_fingerprint == workload.fingerprint() and m.hardware.num_threads == m.threads == 1
    assert Budget.parse("lpips<0.001 and psnr>60").check(m)


def test_aggressive_block_cache_saves_flops_and_changes_images(pipe, workload):
    m = _profile(pipe, AGGRESSIVE, workload)
    stats = m.method_stats["block_cache"]
    assert stats["skipped_blocks"] > 0 and stats["cached_steps"] > 0
    assert 0 < m.flops_ratio < 1
    assert all(v > 0 for v in m.per_image["lpips"]) and all(math.isfinite(v) for v in m.per_image["psnr"])
    q = m.quality["lpips"]
    assert q.ci_low <= q.mean <= q.ci_high and q.n == 2 and not q.higher_is_better
    assert not Budget.parse("lpips<0").check(m)


def test_halving_steps_halves_denoiser_flops(pipe, workload):
    m = _profile(pipe, _recipe("steps", num_inference_steps=STEPS // 2), workload, metrics=("psnr",))
    assert m.flops_ratio == 0.5
    assert list(m.per_image) == ["psnr"]


def test_count_denoiser_flops_counts_only_the_denoiser(pipe, workload):
    per_step = count_denoiser_flops(pipe, workload.model_copy(update={"num_inference_steps": 1}))
    assert count_denoiser_flops(pipe, workload) == STEPS * per_step > 0
    formulas = _flops.EXTRA_FLOP_FORMULAS
    with torch.utils.flop_counter.FlopCounterMode(display=False, custom_mapping=formulas) as everything:
        pipe(**workload.pipeline_kwargs(workload.items()[:1]))
    assert everything.get_total_flops() > STEPS * per_step  # text encoders and the VAE are excluded
    sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    assert everything.get_flop_counts()["Global"][sdpa] > 0  # CPU attention is counted


def test_measurement_json_round_trip(pipe, workload, tmp_path):
    m = _profile(pipe, IDENTITY, workload)
    text = m.to_json()
    assert '"Infinity"' in text  # PSNR of identical images
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    back = Measurement.from_json(text)
    assert back == m and back.per_image["psnr"] == [math.inf, math.inf]
    assert Measurement.load(m.save(tmp_path / "m.json")) == m
    recipe = Recipe.from_dict({**IDENTITY, "metrics": m.recipe_metrics()})  # a recipe can carry it
    assert Recipe.from_json(recipe.to_json()).metrics["speedup"] == m.speedup
    assert Budget.parse("psnr>40").check(recipe.metrics["per_image"])  # "Infinity" strings still read as numbers


def test_baseline_cache_hits_and_recovers_from_corruption(pipe, workload, tmp_path, caplog):
    first = _profile(pipe, AGGRESSIVE, workload, cache_dir=tmp_path)
    assert (first.baseline_items_computed, first.baseline_items_cached) == (2, 0)
    second = _profile(pipe, AGGRESSIVE, workload, cache_dir=tmp_path)
    assert (second.baseline_items_computed, second.baseline_items_cached) == (0, 2)
    assert second.per_image == first.per_image and second.baseline_flops == first.baseline_flops
    assert _profile(pipe, IDENTITY, workload.subset(1), cache_dir=tmp_path).baseline_items_computed == 0

    tensors = sorted(tmp_path.rglob("*.safetensors"))
    assert len(tensors) == 2 and not list(tmp_path.rglob("*.tmp"))
    data = bytearray(tensors[0].read_bytes())
    data[-8:] = b"\x00" * 8  # corrupt the image bytes: checksum mismatch
    tensors[0].write_bytes(bytes(data))
    tensors[1].with_suffix(".json").write_text("{ truncated")  # unreadable sidecar
    with caplog.at_level(logging.WARNING, logger="autoaccel"):
        third = _profile(pipe, AGGRESSIVE, workload, cache_dir=tmp_path)
    assert third.baseline_items_computed == 2
    assert "checksum mismatch" in caplog.text and "unreadable" in caplog.text
    assert third.per_image == first.per_image
    assert _profile(pipe, AGGRESSIVE, workload, cache_dir=tmp_path).baseline_items_computed == 0  # repaired

    other = workload.model_copy(update={"seeds": [0, 9]})  # a new seed: only the new items are computed
    assert _profile(pipe, IDENTITY, other, cache_dir=tmp_path).baseline_items_computed == 2


def test_interrupted_cache_write_leaves_no_corrupt_entry(pipe, workload, tmp_path, monkeypatch):
    real_replace, calls = _cache.os.replace, []

    def interrupt_sidecar(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the first item's tensor is in place, its sidecar not yet
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(_cache.os, "replace", interrupt_sidecar)
    with pytest.raises(KeyboardInterrupt):
        _profile(pipe, IDENTITY, workload, cache_dir=tmp_path)
    monkeypatch.undo()
    assert str(calls[1]).endswith(".json") and not list(tmp_path.rglob("*.tmp"))
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1 and not list(tmp_path.rglob("*.json"))
    m = _profile(pipe, IDENTITY, workload, cache_dir=tmp_path)
    assert m.baseline_items_computed == 2 and m.per_image["lpips"] == [0.0, 0.0]


@pytest.mark.parametrize("error", [RuntimeError("metric failed"), KeyboardInterrupt()])
def test_pipeline_restored_when_profiling_fails(pipe, workload, monkeypatch, error):
    scheduler = pipe.scheduler
    before = _outputs(pipe, workload)

    def boom(*args, **kwargs):
        raise error

    monkeypatch.setattr(run_module, "quality", boom)  # fails while the candidate was generated
    with pytest.raises(type(error)):
        _profile(pipe, AGGRESSIVE, workload)
    assert_pristine(pipe, scheduler)
    assert torch.equal(_outputs(pipe, workload), before)


def test_pipeline_restored_when_interrupted_during_candidate_timing(pipe, workload, monkeypatch):
    scheduler, before = pipe.scheduler, _outputs(pipe, workload)
    timed = _timing.timed
    calls = []

    def interrupt_second(fn, device):
        calls.append(getattr(pipe, "autoaccel_recipe", None))
        if len(calls) == 2:  # ABBA: the second timed run is the candidate's
            raise KeyboardInterrupt
        return timed(fn, device)

    monkeypatch.setattr(_timing, "timed", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        _profile(pipe, _recipe("steps", num_inference_steps=2), workload, metrics=("psnr",))
    assert calls[0] is None and calls[1] is not None
    assert_pristine(pipe, scheduler)
    assert torch.equal(_outputs(pipe, workload), before)


def test_not_interleaved_mode(pipe, workload):
    m = _profile(pipe, _recipe("steps", num_inference_steps=2), workload, metrics=("psnr",), interleave=False)
    assert not m.interleaved and m.candidate_latency.n == m.baseline_latency.n == 2 and m.flops_ratio == 0.5


def test_profile_rejects_bad_inputs(pipe, workload):
    with pytest.raises(ProfileError, match="unknown metric"):
        _profile(pipe, IDENTITY, workload, metrics=("nope",))
    with pytest.raises(ProfileError, match="repeats"):
        profile(pipe, IDENTITY, workload, repeats=0, cache_dir=False)
    handle = Recipe.from_dict(IDENTITY).apply(pipe)
    try:
        with pytest.raises(ProfileError, match="already has a recipe"):
            _profile(pipe, IDENTITY, workload)
    finally:
        handle.remove()
    assert torch.get_num_threads() == 1


# -- statistics -------------------------------------------------------------------------------------------------
def test_t_quantiles_match_tables():
    for df, expected in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (120, 1.9799)]:
        assert t_quantile(0.95, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.95, 10**6) == pytest.approx(1.95996, abs=1e-5)
    assert t_quantile(0.99, 5) == pytest.approx(4.0321, abs=1e-4)


def test_mean_interval_edge_cases():
    mean, low, high = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and (low, high) == pytest.approx((2.5 - 3.1824 * 0.6455, 2.5 + 3.1824 * 0.6455), abs=1e-3)
    assert mean_interval([math.inf, math.inf]) == (math.inf, math.inf, math.inf)
    assert mean_interval([30.0, math.inf]) == (math.inf, 30.0, math.inf)
    assert mean_interval([0.2]) == (0.2, -math.inf, math.inf)


def test_speedup_interval_is_deterministic_and_brackets_the_ratio():
    base, cand = [1.0, 1.1, 0.9, 1.05, 0.95], [0.5, 0.52, 0.48, 0.5, 0.51]
    low, high = speedup_interval(base, cand)
    assert (low, high) == speedup_interval(base, cand)
    assert low <= 1.0 / 0.5 <= high
    assert speedup_interval([1.0], [0.5]) == (0.0, math.inf)


def test_baseline_outputs_share_the_profile_cache(pipe, workload, tmp_path):
    first = baseline_outputs(pipe, workload, cache_dir=tmp_path)
    assert (first.computed, first.cached) == (2, 0) and first.images.shape == (2, 3, 32, 32)
    assert first.flops_per_image == count_denoiser_flops(pipe, workload)
    m = _profile(pipe, IDENTITY, workload, cache_dir=tmp_path)
    assert m.baseline_items_computed == 0 and m.baseline_flops == first.flops_per_image
    again = baseline_outputs(pipe, workload, workload.items()[1:], cache_dir=tmp_path)
    assert (again.computed, again.cached) == (0, 1) and torch.equal(again.images[0], first.images[1])


def test_a_compiled_recipe_is_scored_on_compiled_outputs_and_counted_eagerly():
    from autoaccel.testing import tiny_pipeline

    pipe = tiny_pipeline("flux")
    workload = Workload.for_pipeline(
        pipe,
        prompts=["a cat", "a dog"],
        num_inference_steps=4,
        height=32,
        width=32,
        call_kwargs={"max_sequence_length": 32},
    )
    recipe = {"schema_version": 1, "methods": [{"name": "compile"}]}
    m = profile(pipe, recipe, workload, metrics=("psnr",), repeats=1, warmup=1, progress=False, cache_dir=False)
    assert m.flops_ratio == 1.0  # the counter saw every operator (compiled kernels would hide them)
    # eager outputs would equal the baseline (PSNR inf); compiled ones differ by float rounding only
    assert all(100 < p < math.inf for p in m.per_image["psnr"]), m.per_image

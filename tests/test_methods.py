"""Every method on every tiny pipeline it supports: it runs, saves compute, is inert when told to, removes exactly."""

from __future__ import annotations

import logging

import pytest
import torch

import autoaccel.methods as M
from autoaccel.errors import NotApplicableError, RecipeError
from autoaccel.methods import magcache
from autoaccel.testing import default_call_kwargs

from ._pipes import STEPS, assert_pristine, hook_names, pipe_for, run

# method -> (families, inert params, aggressive params, counter that must be > 0 when aggressive, or None)
CASES = {
    "steps": (("flux", "sd3", "pixart", "dit", "sd"), {}, {"num_inference_steps": 4}, None),
    "block_cache": (
        ("flux", "sd3", "pixart", "dit"),
        {"threshold": 0.0},
        {"threshold": 0.5, "warmup_steps": 0, "max_consecutive_cached": 100},
        "skipped_blocks",
    ),
    "taylorseer": (("flux", "sd3", "pixart", "dit"), {"interval": 1}, {"interval": 3, "warmup_steps": 1}, None),
    "faster_cache": (
        ("flux",),
        {"attention_skip_range": 1},
        {"attention_skip_range": 3, "attention_skip_below_t": 1000.0},
        None,
    ),
    "pab": (
        ("flux", "sd3", "pixart", "dit"),
        {"self_attention_skip_range": 1},
        {"self_attention_skip_range": 3, "window_low_t": 0.0, "window_high_t": 1000.0},
        None,
    ),
    "deep_cache": (("sd",), {"interval": 1}, {"interval": 3}, "skipped_modules"),
    "cfg_truncation": (
        ("flux", "sd3", "pixart", "dit", "sd"),
        {"after_fraction": 1.0},
        {"after_fraction": 0.3},
        None,
    ),
}
PAIRS = [(m, k) for m, (fams, *_) in CASES.items() for k in fams]


def _apply(pipe, name, params):
    return M.apply_methods(pipe, [(name, M.get(name).config(**params))])


@pytest.mark.parametrize(("name", "kind"), PAIRS, ids=[f"{m}-{k}" for m, k in PAIRS])
def test_method_saves_compute_and_removes_exactly(name, kind):
    families, inert, aggressive, counter = CASES[name]
    pipe = pipe_for(kind)
    scheduler = pipe.scheduler
    base, base_flops = run(pipe, kind, cfg=True)

    handle = _apply(pipe, name, inert)
    try:
        same, same_flops = run(pipe, kind, cfg=True)
    finally:
        handle.remove()
    assert torch.equal(same, base), "a setting that caches nothing must not change the output"
    assert same_flops == base_flops

    handle = _apply(pipe, name, aggressive)
    try:
        fast, fast_flops = run(pipe, kind, cfg=True)
        again, _ = run(pipe, kind, cfg=True)  # per-generation state is reset between calls
        stats = dict(handle.handles[0].stats)
    finally:
        handle.remove()
    assert fast_flops < base_flops, f"{name} on {kind} saved no FLOPs"
    assert torch.equal(fast, again)
    assert not torch.equal(fast, base)
    if counter:
        assert stats[counter] > 0, stats

    assert_pristine(pipe, scheduler)
    restored, _ = run(pipe, kind, cfg=True)
    assert torch.equal(restored, base), "remove() must restore bit-identical output"


def test_block_cache_counts_skipped_blocks_exactly():
    pipe = pipe_for("flux")  # 2 double + 3 single blocks: fn=1, bn=1 leaves 3 middle blocks
    params = {"threshold": 1.0, "fn_blocks": 1, "bn_blocks": 1, "warmup_steps": 2, "max_consecutive_cached": 2}
    handle = _apply(pipe, "block_cache", params)
    try:
        run(pipe, "flux")
        stats = handle.handles[0].stats
    finally:
        handle.remove()
    # 8 steps: 2 warm-up computed; then cached, cached, computed (cap of 2) ... -> steps 2,3 cached, 4 computed, 5,6
    # cached, 7 computed: 4 cached steps, each skipping the 3 middle blocks.
    assert stats["cached_steps"] == 4
    assert stats["computed_steps"] == 4
    assert stats["skipped_blocks"] == 4 * 3
    assert stats["computed_blocks"] == 4 * 5 + 4 * 2


def test_cfg_truncation_halves_the_batch_on_truncated_steps():
    pipe = pipe_for("sd")
    handle = _apply(pipe, "cfg_truncation", {"after_fraction": 0.5})
    try:
        run(pipe, "sd")
        stats = handle.handles[0].stats
    finally:
        handle.remove()
    assert stats["halved_calls"] == STEPS // 2


def test_cfg_truncation_skips_flux_true_cfg_calls():
    pipe = pipe_for("flux")
    handle = _apply(pipe, "cfg_truncation", {"after_fraction": 0.25})
    try:
        run(pipe, "flux", cfg=True)
        stats = handle.handles[0].stats
    finally:
        handle.remove()
    assert stats["skipped_uncond_calls"] == STEPS - 2


def test_steps_runs_the_requested_number_of_steps():
    pipe = pipe_for("flux")
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    try:
        handle = _apply(pipe, "steps", {"num_inference_steps": 3})
        try:
            run(pipe, "flux")
        finally:
            handle.remove()
        assert len(calls) == 3
        calls.clear()
        run(pipe, "flux")
        assert len(calls) == STEPS
    finally:
        hook.remove()


def test_steps_spacing_and_shift_checked_against_the_scheduler():
    flux = pipe_for("flux")
    with pytest.raises(NotApplicableError, match="dynamic"):
        M.check_applicable(flux, "steps", M.get("steps").config(shift=2.0))
    sd = pipe_for("sd")
    M.check_applicable(sd, "steps", M.get("steps").config(timestep_spacing="trailing"))
    base, _ = run(sd, "sd")
    handle = _apply(sd, "steps", {"timestep_spacing": "trailing"})
    try:
        trailing, _ = run(sd, "sd")
    finally:
        handle.remove()
    assert not torch.equal(base, trailing)


@pytest.mark.parametrize("kind", ["flux", "sd"])
def test_quantize_int8_replaces_weights_and_restores_them(kind):
    pipe = pipe_for(kind)
    base, _ = run(pipe, kind)
    linears = [
        m
        for m in pipe_for(kind).components["transformer" if kind == "flux" else "unet"].modules()
        if isinstance(m, torch.nn.Linear)
    ]
    originals = [m.weight for m in linears]
    handle = _apply(pipe, "quantize", {"scheme": "int8_weight_only"})
    try:
        quant, _ = run(pipe, kind)
        changed = sum(type(m.weight) is not torch.nn.Parameter for m in linears)
        assert handle.handles[0].stats["quantized_linears"] == changed > 0
    finally:
        handle.remove()
    assert all(m.weight is w for m, w in zip(linears, originals, strict=True))
    assert not torch.equal(quant, base)
    assert (quant - base).abs().mean() < 0.05
    restored, _ = run(pipe, kind)
    assert torch.equal(restored, base)


def test_quantize_int4_on_cpu_really_quantizes():
    pipe = pipe_for("flux")
    base, _ = run(pipe, "flux")
    handle = _apply(pipe, "quantize", {"scheme": "int4_weight_only", "group_size": 16})
    try:
        quant, _ = run(pipe, "flux")
    finally:
        handle.remove()
    assert not torch.equal(quant, base)


def test_quantize_fp8_needs_a_capable_gpu():
    with pytest.raises(NotApplicableError, match="8.9"):
        M.check_applicable(pipe_for("flux"), "quantize", M.get("quantize").config(scheme="fp8_weight_only"))


def test_quantize_keeps_named_layers_in_full_precision():
    pipe = pipe_for("flux")
    handle = _apply(pipe, "quantize", {"keep": [r"^single_transformer_blocks\."]})
    try:
        kept = [
            m
            for n, m in pipe.transformer.named_modules()
            if n.startswith("single_transformer_blocks.") and isinstance(m, torch.nn.Linear)
        ]
        assert kept and all(type(m.weight) is torch.nn.Parameter for m in kept)
    finally:
        handle.remove()


def test_attention_backend_on_flux():
    pipe = pipe_for("flux")
    base, _ = run(pipe, "flux")
    handle = _apply(pipe, "attention_backend", {"backend": "native"})
    try:
        same, _ = run(pipe, "flux")
    finally:
        handle.remove()
    assert torch.equal(same, base)
    handle = _apply(pipe, "attention_backend", {"backend": "_native_math"})
    try:
        math, _ = run(pipe, "flux")
    finally:
        handle.remove()
    assert torch.allclose(math, base, atol=1e-4)
    assert torch.equal(run(pipe, "flux")[0], base)
    with pytest.raises(NotApplicableError, match="flash-attn|CUDA"):
        M.check_applicable(pipe, "attention_backend", M.get("attention_backend").config(backend="flash"))
    with pytest.raises(NotApplicableError, match="dispatcher"):
        M.check_applicable(pipe_for("sd"), "attention_backend", M.get("attention_backend").config())


@pytest.mark.parametrize("kind", ["flux", "sd3", "pixart", "dit"])
def test_magcache_calibrates_then_skips_and_restores(kind):
    pipe = pipe_for(kind)
    base, base_flops = run(pipe, kind, cfg=True)
    ratios = magcache.calibrate(pipe, **default_call_kwargs(kind, steps=STEPS, cfg=True))
    assert len(ratios) == STEPS and ratios[0] == 1.0
    assert hook_names(pipe) == {}
    with pytest.raises(NotApplicableError, match="calibrate"):
        M.check_applicable(pipe, "magcache", M.get("magcache").config())
    handle = _apply(pipe, "magcache", {"threshold": 0.0, "mag_ratios": ratios})
    try:
        inert, inert_flops = run(pipe, kind, cfg=True)
    finally:
        handle.remove()
    assert torch.equal(inert, base) and inert_flops == base_flops
    handle = _apply(
        pipe, "magcache", {"threshold": 2.0, "retention_ratio": 0.0, "max_skip_steps": 4, "mag_ratios": ratios}
    )
    try:
        fast, fast_flops = run(pipe, kind, cfg=True)
    finally:
        handle.remove()
    assert fast_flops < base_flops
    assert not torch.equal(fast, base)
    assert torch.equal(run(pipe, kind, cfg=True)[0], base)


@pytest.mark.parametrize(
    ("name", "kind", "params", "match"),
    [
        ("deep_cache", "flux", {}, "sd"),
        ("block_cache", "sd", {}, "flux, sd3, pixart, dit"),
        ("block_cache", "flux", {"fn_blocks": 3, "bn_blocks": 2}, "middle block"),
        ("deep_cache", "sd", {"branch": 1}, "at most 0"),
        ("faster_cache", "sd3", {}, "flux"),
    ],
)
def test_not_applicable_is_refused_and_leaves_no_trace(name, kind, params, match):
    pipe = pipe_for(kind)
    scheduler = pipe.scheduler
    with pytest.raises(NotApplicableError, match=match):
        _apply(pipe, name, params)
    assert_pristine(pipe, scheduler)


def test_allowed_combination_runs_and_removes_exactly():
    pipe = pipe_for("flux")
    scheduler = pipe.scheduler
    base, base_flops = run(pipe, "flux", cfg=True)
    methods = [
        ("cfg_truncation", M.get("cfg_truncation").config(after_fraction=0.5)),
        ("block_cache", M.get("block_cache").config(threshold=0.3, warmup_steps=1)),
        ("steps", M.get("steps").config(num_inference_steps=6)),
        ("quantize", M.get("quantize").config()),
    ]
    handle = M.apply_methods(pipe, methods)
    try:
        assert [h.name for h in handle.handles] == ["steps", "quantize", "block_cache", "cfg_truncation"]
        _, flops = run(pipe, "flux", cfg=True)
    finally:
        handle.remove()
    assert flops < base_flops
    assert_pristine(pipe, scheduler)
    assert torch.equal(run(pipe, "flux", cfg=True)[0], base)


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (["block_cache", "taylorseer"], "feature_cache"),
        (["pab", "faster_cache"], "feature_cache"),
        (["steps", "steps"], "twice"),
    ],
)
def test_forbidden_combinations_are_refused(names, match):
    pipe = pipe_for("flux")
    scheduler = pipe.scheduler
    with pytest.raises(RecipeError, match=match):
        M.apply_methods(pipe, [(n, M.get(n).config()) for n in names])
    assert_pristine(pipe, scheduler)


def test_second_cache_on_an_accelerated_pipeline_is_refused():
    pipe = pipe_for("flux")
    handle = _apply(pipe, "block_cache", {})
    try:
        with pytest.raises(RecipeError, match="feature_cache"):
            _apply(pipe, "pab", {})
        with pytest.raises(RecipeError, match="twice"):
            _apply(pipe, "block_cache", {})
    finally:
        handle.remove()
    handle = _apply(pipe, "pab", {})  # allowed again once removed
    handle.remove()


def test_failed_apply_rolls_back_earlier_methods(monkeypatch):
    pipe = pipe_for("flux")
    scheduler = pipe.scheduler
    spec = M.get("block_cache")

    def boom(pipe, config):
        raise RuntimeError("boom")

    monkeypatch.setitem(M._REGISTRY, "block_cache", type(spec)(**{**spec.__dict__, "apply": boom}))
    with pytest.raises(RuntimeError, match="boom"):
        M.apply_methods(
            pipe,
            [
                ("steps", M.get("steps").config(num_inference_steps=2)),
                ("quantize", M.get("quantize").config()),
                ("block_cache", spec.config()),
            ],
        )
    assert_pristine(pipe, scheduler)
    assert all(
        type(m.weight) is torch.nn.Parameter for m in pipe.transformer.modules() if isinstance(m, torch.nn.Linear)
    )


def test_registry_lists_every_method_with_documented_knobs():
    names = M.available()
    assert names[0] == "steps"
    expected = {
        "steps",
        "quantize",
        "attention_backend",
        "block_cache",
        "taylorseer",
        "magcache",
        "faster_cache",
        "pab",
        "deep_cache",
        "cfg_truncation",
    }
    assert expected <= set(names)
    for name in names:
        spec = M.get(name)
        assert spec.paper and spec.summary and spec.families
        for field_name, field in spec.config.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"
    with pytest.raises(RecipeError, match="unknown method"):
        M.get("turbo")


def test_methods_doc_is_generated_from_the_registry():
    from pathlib import Path

    from autoaccel.methods._docs import render

    doc = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
    assert doc.read_text() == render(), "regenerate: python -m autoaccel.methods._docs > docs/methods.md"


@pytest.mark.parametrize("kind", ["flux", "sd3", "pixart", "dit", "sd"])
def test_multistep_solver_replaces_the_scheduler_and_removes_exactly(kind, caplog):
    pipe = pipe_for(kind)
    scheduler = pipe.scheduler
    base, _ = run(pipe, kind)
    euler_like = _apply(pipe, "steps", {"num_inference_steps": 4})
    try:
        few, few_flops = run(pipe, kind)
    finally:
        euler_like.remove()
    with caplog.at_level(logging.WARNING):
        handle = _apply(pipe, "steps", {"num_inference_steps": 4, "solver": "unipc"})
    assert "not expected" not in caplog.text  # the solver gets only the config keys it takes
    try:
        assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
        if "shift" in scheduler.config:  # flow matching: the solver keeps the model's sigma shift
            assert pipe.scheduler.config.use_flow_sigmas and pipe.scheduler.config.flow_shift == scheduler.config.shift
        solved, solved_flops = run(pipe, kind)
    finally:
        handle.remove()
    assert solved_flops == few_flops  # same model calls: only the update rule changed
    assert not torch.equal(solved, few)
    assert_pristine(pipe, scheduler)
    assert torch.equal(run(pipe, kind)[0], base)


def test_compile_matches_eager_counts_the_same_flops_and_removes_exactly():
    from autoaccel.profiling import DenoiserFlops

    pipe = pipe_for("flux")

    def kwargs():  # a fresh seeded generator per call
        return default_call_kwargs("flux", steps=2)

    with DenoiserFlops(pipe) as eager_flops:
        base = pipe(**kwargs()).images
    handle = _apply(pipe, "compile", {})
    try:
        assert handle.handles[0].stats == {"compiled_modules": 4}  # transformer, VAE decoder, CLIP and T5
        assert pipe.transformer._compiled_call_impl is not None
        compiled = pipe(**kwargs()).images
        with DenoiserFlops(pipe) as compiled_flops:  # counted eagerly: kernels would hide the operators
            pipe(**kwargs())
    finally:
        handle.remove()
    torch.testing.assert_close(compiled, base, atol=1e-4, rtol=1e-4)
    assert compiled_flops.total == eager_flops.total > 0
    assert pipe.transformer._compiled_call_impl is None and pipe.vae.decoder._compiled_call_impl is None
    assert torch.equal(pipe(**kwargs()).images, base)


def test_compile_refuses_a_hooked_denoiser_and_leaves_nothing_applied():
    pipe = pipe_for("flux")
    scheduler = pipe.scheduler
    cache = ("block_cache", M.get("block_cache").config(threshold=0.1))
    with pytest.raises(NotApplicableError, match="denoiser=false"):
        M.apply_methods(pipe, [cache, ("compile", M.get("compile").config())])
    assert_pristine(pipe, scheduler)
    assert pipe.transformer._compiled_call_impl is None
    handle = M.apply_methods(pipe, [cache, ("compile", M.get("compile").config(denoiser=False))])
    try:
        assert handle.handles[-1].stats == {"compiled_modules": 3}
        assert pipe.transformer._compiled_call_impl is None and pipe.vae.decoder._compiled_call_impl is not None
    finally:
        handle.remove()
    assert_pristine(pipe, scheduler)
    assert pipe.vae.decoder._compiled_call_impl is None

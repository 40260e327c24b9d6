"""`quant_attention` and `sparse_attention` on the tiny flux, sd3, pixart and dit pipelines (torch reference on CPU)."""

from __future__ import annotations

import threading

import pydantic
import pytest
import torch

import autoaccel.methods as M
from autoaccel.errors import NotApplicableError, RecipeError
from autoaccel.methods import _attention, quant_attention, sparse_attention
from autoaccel.testing import default_call_kwargs

from ._pipes import assert_pristine, hook_names, pipe_for

FAMILIES = ("flux", "sd3", "pixart", "dit")
STEPS = 4
# Targeted attention modules per denoiser call: flux 2 double + 3 single blocks; the others 4 blocks (CFG batched).
SITES = {"flux": 5, "sd3": 4, "pixart": 4, "dit": 4}
# Text tokens of the joint attention: flux max_sequence_length=32 (first); sd3 77 CLIP + 32 T5 tokens (last).
TEXT = {"flux": 32, "sd3": 77 + 32, "pixart": 0, "dit": 0}
SMALL_BLOCKS = {"block_size": 16, "q_block_size": 16}  # the tiny sequences hold 64 to 173 tokens


def _images(pipe, kind):
    return pipe(**default_call_kwargs(kind, steps=STEPS)).images


def _apply(pipe, name, **params):
    return M.apply_methods(pipe, [(name, M.get(name).config(**params))])


def _run_with(pipe, kind, name, **params):
    """Images and counters of one generation with the method applied; removes it afterwards."""
    handle = _apply(pipe, name, **params)
    try:
        images = _images(pipe, kind)
    finally:
        handle.remove()
    return images, dict(handle.handles[0].stats)


@pytest.fixture(scope="module")
def baselines():
    return {kind: _images(pipe_for(kind), kind) for kind in FAMILIES}


@pytest.mark.parametrize("kind", FAMILIES)
def test_sparse_keep_ratio_one_is_dense_attention(kind, baselines):
    images, stats = _run_with(pipe_for(kind), kind, "sparse_attention", keep_ratio=1.0, dense_first_steps=0)
    assert stats["kernel_calls"] == STEPS * SITES[kind] and stats["dense_calls"] == 0
    assert stats["kept_blocks"] == stats["total_blocks"] > 0
    # The reference's tiled online softmax rounds differently from SDPA: measured max |diff| <= 2e-6 on [0, 1] images.
    torch.testing.assert_close(images, baselines[kind], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", FAMILIES)
def test_sparse_drops_blocks_and_removes_exactly(kind, baselines):
    pipe = pipe_for(kind)
    scheduler = pipe.scheduler
    images, stats = _run_with(pipe, kind, "sparse_attention", keep_ratio=0.3, dense_first_steps=0, **SMALL_BLOCKS)
    assert stats["kernel_calls"] == STEPS * SITES[kind] and stats["fallback_calls"] == 0
    assert 0 < stats["kept_blocks"] < stats["total_blocks"]
    assert not torch.allclose(images, baselines[kind], atol=1e-3)
    assert_pristine(pipe, scheduler)
    assert torch.equal(_images(pipe, kind), baselines[kind])


@pytest.mark.parametrize("kind", FAMILIES)
def test_quant_changes_output_slightly_and_removes_exactly(kind, baselines):
    pipe = pipe_for(kind)
    scheduler = pipe.scheduler
    images, stats = _run_with(pipe, kind, "quant_attention")
    assert stats == {"kernel_calls": STEPS * SITES[kind], "dense_calls": 0, "fallback_calls": 0}
    diff = (images - baselines[kind]).abs().mean().item()
    assert 1e-7 < diff < 2e-3, diff  # measured 8e-6 (flux) to 3e-4 (dit) on [0, 1] images
    assert_pristine(pipe, scheduler)
    assert torch.equal(_images(pipe, kind), baselines[kind])
    assert torch.nn.functional.scaled_dot_product_attention is _attention._SDPA


@pytest.mark.parametrize(
    ("kind", "keep_ratio", "fraction"),
    [
        ("dit", 0.5, 1 / 2),  # 64 tokens = 4 key blocks: diagonal + 1 per query block
        ("pixart", 0.25, 1 / 4),  # only the diagonal
        # 96 tokens = 6 blocks, text in blocks 0-1: text rows dense (2 x 6), image rows text + diagonal (4 x 3).
        ("flux", 0.3, (2 * 6 + 4 * 3) / 36),
        # 173 tokens = 11 blocks, text moved first fills blocks 0-6: text rows dense (7 x 11), image rows 8 (4 x 8).
        ("sd3", 0.3, (7 * 11 + 4 * 8) / 121),
    ],
)
def test_kept_fraction_is_the_flop_fraction(kind, keep_ratio, fraction):
    _, stats = _run_with(pipe_for(kind), kind, "sparse_attention", keep_ratio=keep_ratio, dense_first_steps=0,
                         **SMALL_BLOCKS)  # fmt: skip
    assert stats["kept_blocks"] / stats["total_blocks"] == pytest.approx(fraction, abs=1e-12)


@pytest.mark.parametrize("kind", FAMILIES)
def test_text_tokens_reach_the_mask_estimate(kind, monkeypatch):
    seen: list[tuple[int, int]] = []
    original = sparse_attention.sparse_block_mask

    def spy(q, k, **kwargs):
        seen.append((kwargs["text_tokens"], q.shape[2]))
        return original(q, k, **kwargs)

    monkeypatch.setattr(sparse_attention, "sparse_block_mask", spy)
    _run_with(pipe_for(kind), kind, "sparse_attention", keep_ratio=0.5, dense_first_steps=0, **SMALL_BLOCKS)
    assert {text for text, _ in seen} == {TEXT[kind]}
    assert {n for _, n in seen} == {64 + TEXT[kind]}  # 64 image tokens + text tokens


def test_text_last_is_moved_first_and_back():
    calls = []

    class Spy(_attention.AttentionKernel):
        text_aware = True

        def __call__(self, q, k, v, *, scale, text_tokens):
            calls.append((q, text_tokens))
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)

    class Tracker:
        step = 0

    stats = {"kernel_calls": 0, "dense_calls": 0, "fallback_calls": 0}
    shared = _attention._Shared(Spy(), Tracker(), 0, stats)
    q, k, v = torch.randn(3, 2, 3, 40, 8).unbind(0)
    out = shared.attend({**_attention._bind((q, k, v), {}), "scale": 0.3}, "last", 12)
    assert torch.equal(calls[0][0][:, :, :12], q[:, :, 28:]) and calls[0][1] == 12
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3))
    assert stats["kernel_calls"] == 1


@pytest.mark.parametrize(
    ("kwargs", "n_k"),
    [({"attn_mask": torch.ones(5, 5, dtype=torch.bool)}, 5), ({"is_causal": True}, 5), ({"dropout_p": 0.5}, 5),
     ({}, 7)],  # the last: cross-attention (query and key lengths differ)
    ids=["attn_mask", "is_causal", "dropout", "cross_attention"],
)  # fmt: skip
def test_unsupported_sdpa_calls_fall_through(kwargs, n_k):
    class Never(_attention.AttentionKernel):
        def __call__(self, q, k, v, *, scale, text_tokens):
            raise AssertionError("the kernel must not see this call")

    class Tracker:
        step = 0

    stats = {"kernel_calls": 0, "dense_calls": 0, "fallback_calls": 0}
    q, kv = torch.randn(1, 2, 5, 8), torch.randn(1, 2, n_k, 8)
    torch.manual_seed(0)
    expected = torch.nn.functional.scaled_dot_product_attention(q, kv, kv, **kwargs)
    torch.manual_seed(0)
    with _attention._SDPAMode(_attention._Shared(Never(), Tracker(), 0, stats), "none", 0):
        out = torch.nn.functional.scaled_dot_product_attention(q, kv, kv, **kwargs)
    assert torch.equal(out, expected)
    assert stats == {"kernel_calls": 0, "dense_calls": 1, "fallback_calls": 1}


@pytest.mark.parametrize("name", ["quant_attention", "sparse_attention"])
def test_dense_first_steps_are_exact(name):
    _, stats = _run_with(pipe_for("flux"), "flux", name, dense_first_steps=2)
    assert stats["dense_calls"] == 2 * SITES["flux"]
    assert stats["kernel_calls"] == (STEPS - 2) * SITES["flux"]
    assert stats["fallback_calls"] == 0


def test_skipped_blocks_and_cross_attention_are_not_hooked():
    pipe = pipe_for("flux")  # blocks: transformer_blocks.0-1, single_transformer_blocks.0-2
    handle = _apply(pipe, "sparse_attention", skip_first_blocks=1, skip_last_blocks=1, dense_first_steps=0)
    try:
        hooked = {n for n, hooks in hook_names(pipe).items() if "autoaccel.sparse_attention" in hooks}
        _images(pipe, "flux")
    finally:
        handle.remove()
    middle = ["transformer_blocks.1", "single_transformer_blocks.0", "single_transformer_blocks.1"]
    assert hooked == {*middle, *(f"{b}.attn" for b in middle)}  # block hooks record the text length
    assert handle.handles[0].stats["kernel_calls"] == STEPS * 3

    pixart = pipe_for("pixart")
    handle = _apply(pixart, "quant_attention")
    try:
        hooked = {n for n, hooks in hook_names(pixart).items() if "autoaccel.quant_attention" in hooks}
    finally:
        handle.remove()
    assert hooked == {f"transformer_blocks.{i}.attn1" for i in range(4)}


def test_sdpa_is_restored_after_an_exception_in_the_forward(monkeypatch, baselines):
    pipe = pipe_for("flux")
    original = torch.nn.functional.scaled_dot_product_attention

    def boom(*args, **kwargs):
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(quant_attention, "quant_attention", boom)
    handle = _apply(pipe, "quant_attention")
    try:
        with pytest.raises(RuntimeError, match="kernel failed"):
            _images(pipe, "flux")
        assert torch.nn.functional.scaled_dot_product_attention is original
        assert torch._C._len_torch_function_stack() == 0  # the interception mode was popped
    finally:
        handle.remove()
    assert torch.nn.functional.scaled_dot_product_attention is original
    assert torch.equal(_images(pipe, "flux"), baselines["flux"])


def test_other_threads_are_not_intercepted():
    pipe = pipe_for("dit")
    q = torch.randn(1, 2, 16, 8)
    expected = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    results = []

    def other_thread():
        results.append(torch.nn.functional.scaled_dot_product_attention(q, q, q))

    def spawn(module, args):  # runs inside the attention forward, while the interception mode is active
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()

    hook = pipe.transformer.transformer_blocks[0].attn1.to_q.register_forward_pre_hook(spawn)
    try:
        _, stats = _run_with(pipe, "dit", "quant_attention")
    finally:
        hook.remove()
    assert stats["kernel_calls"] == STEPS * SITES["dit"]  # the other thread's calls were not counted
    assert len(results) == STEPS and all(torch.equal(r, expected) for r in results)


def test_combines_with_block_cache_and_removes_exactly(baselines):
    pipe = pipe_for("flux")
    scheduler = pipe.scheduler
    methods = [
        ("block_cache", M.get("block_cache").config(threshold=0.5, warmup_steps=0, max_consecutive_cached=100)),
        ("sparse_attention", M.get("sparse_attention").config(keep_ratio=0.5, dense_first_steps=0, **SMALL_BLOCKS)),
    ]
    handle = M.apply_methods(pipe, methods)
    try:
        assert [h.name for h in handle.handles] == ["sparse_attention", "block_cache"]
        images = _images(pipe, "flux")
        stats = handle.stats
    finally:
        handle.remove()
    assert stats["block_cache"]["skipped_blocks"] > 0
    # Computed blocks ran their attention through the kernel; skipped ones did not run at all.
    assert 0 < stats["sparse_attention"]["kernel_calls"] == stats["block_cache"]["computed_blocks"]
    assert not torch.equal(images, baselines["flux"])
    assert_pristine(pipe, scheduler)
    assert torch.equal(_images(pipe, "flux"), baselines["flux"])


@pytest.mark.parametrize(
    "names",
    [["attention_backend", "quant_attention"], ["sparse_attention", "attention_backend"],
     ["quant_attention", "sparse_attention"]],
)  # fmt: skip
def test_one_attention_method_at_a_time(names):
    pipe = pipe_for("flux")
    scheduler = pipe.scheduler
    with pytest.raises(RecipeError, match="`attention` methods"):
        M.apply_methods(pipe, [(n, M.get(n).config()) for n in names])
    assert_pristine(pipe, scheduler)


def test_fp8_pv_is_refused_on_cpu():
    pipe = pipe_for("flux")
    scheduler = pipe.scheduler
    with pytest.raises(NotApplicableError, match=r"fp8.*compute capability >= 8\.9.*cpu"):
        _apply(pipe, "quant_attention", pv_dtype="fp8")
    assert_pristine(pipe, scheduler)


@pytest.mark.parametrize(
    ("name", "kind", "params", "match"),
    [
        ("quant_attention", "sd", {}, "flux, sd3, pixart, dit"),
        ("sparse_attention", "sd", {}, "flux, sd3, pixart, dit"),
        ("sparse_attention", "dit", {"skip_first_blocks": 2, "skip_last_blocks": 2}, "at least one"),
        ("quant_attention", "pixart", {"backend": "triton"}, "triton"),
    ],
)
def test_not_applicable_is_refused_and_leaves_no_trace(name, kind, params, match):
    pipe = pipe_for(kind)
    scheduler = pipe.scheduler
    with pytest.raises(NotApplicableError, match=match):
        _apply(pipe, name, **params)
    assert_pristine(pipe, scheduler)


def test_dispatcher_backend_must_end_in_torch_sdpa():
    from diffusers.models.attention_dispatch import AttentionBackendName

    pipe = pipe_for("flux")
    procs = [m.processor for m in pipe.transformer.modules() if hasattr(m, "processor")]
    try:
        for proc in procs:
            proc._attention_backend = AttentionBackendName("_native_math")
        _, stats = _run_with(pipe, "flux", "quant_attention")
        assert stats["kernel_calls"] == STEPS * SITES["flux"]
        for proc in procs:
            proc._attention_backend = AttentionBackendName("flash")
        with pytest.raises(NotApplicableError, match="dispatcher backend 'flash'"):
            _apply(pipe, "quant_attention")
    finally:
        for proc in procs:
            proc._attention_backend = None


def test_registry_entries_and_config_validation():
    for name in ("quant_attention", "sparse_attention"):
        spec = M.get(name)
        assert spec.group == "attention" and spec.stage == 25
        assert spec.families == FAMILIES and "arXiv" in spec.paper
        assert name in M.available()
    with pytest.raises(pydantic.ValidationError):
        M.get("quant_attention").config(qk_bits=4)
    with pytest.raises(pydantic.ValidationError):
        M.get("quant_attention").config(pv_dtype="fp32")
    with pytest.raises(pydantic.ValidationError):
        M.get("sparse_attention").config(keep_ratio=0.0)
    with pytest.raises(pydantic.ValidationError):
        M.get("sparse_attention").config(block_size=48)
    search = M.get("sparse_attention").config.model_fields["keep_ratio"].json_schema_extra["search"]
    assert 0 < search["low"] < search["high"] <= 1

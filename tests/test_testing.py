"""Tests of the tiny random-weight pipelines (`autoaccel.testing`) and in-code tokenizers (`autoaccel.tokenizers`)."""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import DiffusionPipeline
from transformers import CLIPTokenizer, T5TokenizerFast

from autoaccel.testing import TINY_KINDS, TINY_SIZE, default_call_kwargs, tiny_pipeline
from autoaccel.tokenizers import DEFAULT_WORDS, clip_tokenizer, t5_tokenizer

EXPECTED = {  # kind: (pipeline class, denoiser attribute, {block ModuleList: length})
    "flux": ("FluxPipeline", "transformer", {"transformer_blocks": 2, "single_transformer_blocks": 3}),
    "sd3": ("StableDiffusion3Pipeline", "transformer", {"transformer_blocks": 4}),
    "pixart": ("PixArtAlphaPipeline", "transformer", {"transformer_blocks": 4}),
    "dit": ("DiTPipeline", "transformer", {"transformer_blocks": 4}),
    "sd": ("StableDiffusionPipeline", "unet", {"down_blocks": 2, "up_blocks": 2}),
}
PROMPTS = ["a photo of a cat", "a painting of a dog", "Ünïcödé 日本 text, 123!", ""]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are far faster on one thread (more only adds contention); restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _pipe(kind: str) -> DiffusionPipeline:
    return tiny_pipeline(kind)


def _run(pipe: DiffusionPipeline, kind: str, **overrides) -> torch.Tensor:
    return pipe(**{**default_call_kwargs(kind), **overrides}).images


def test_kinds_constant():
    assert TINY_KINDS == tuple(EXPECTED)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_builds_and_runs(kind):
    pipe = _pipe(kind)
    class_name, denoiser_name, blocks = EXPECTED[kind]
    assert type(pipe).__name__ == class_name
    denoiser = getattr(pipe, denoiser_name)
    assert {name: len(getattr(denoiser, name)) for name in blocks} == blocks
    if kind == "sd":
        assert denoiser.mid_block is not None
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            assert not component.training
            assert {p.dtype for p in component.parameters()} == {torch.float32}
            assert {p.device.type for p in component.parameters()} == {"cpu"}
    image = _run(pipe, kind)
    assert isinstance(image, torch.Tensor)
    assert image.shape == (1, 3, TINY_SIZE, TINY_SIZE) and image.dtype == torch.float32
    assert torch.isfinite(image).all()
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.01


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_same_seed_is_deterministic_and_other_seed_differs(kind):
    first = _run(_pipe(kind), kind)
    assert torch.equal(first, _run(_pipe(kind), kind))  # repeated calls: no hidden state or dropout
    assert torch.equal(first, _run(tiny_pipeline(kind, seed=0), kind))
    assert (first - _run(tiny_pipeline(kind, seed=1), kind)).abs().max() > 1e-3


def test_build_leaves_global_rng_untouched():
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    tiny_pipeline("dit")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_save_reload_identical(kind, tmp_path):
    pipe = _pipe(kind)
    pipe.save_pretrained(tmp_path)
    reloaded = DiffusionPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert type(reloaded) is type(pipe)
    assert torch.equal(_run(reloaded, kind), _run(pipe, kind))
    if kind == "dit":
        assert reloaded.get_label_ids(["dog", "kitty"]) == pipe.get_label_ids(["dog", "kitty"]) == [1, 0]


def test_default_call_kwargs_guidance():
    for kind in ("sd3", "pixart", "sd", "dit"):
        assert default_call_kwargs(kind)["guidance_scale"] > 1
        assert default_call_kwargs(kind, cfg=False)["guidance_scale"] == 1.0
    flux = default_call_kwargs("flux")
    assert "true_cfg_scale" not in flux and "negative_prompt" not in flux
    flux_cfg = default_call_kwargs("flux", cfg=True, steps=2, seed=3)
    assert flux_cfg["true_cfg_scale"] > 1 and flux_cfg["negative_prompt"] and flux_cfg["num_inference_steps"] == 2
    first, second = default_call_kwargs("sd", seed=3)["generator"], default_call_kwargs("sd", seed=3)["generator"]
    assert first is not second and torch.equal(first.get_state(), second.get_state())


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_cfg_changes_output(kind):
    pipe = _pipe(kind)
    assert (_run(pipe, kind) - pipe(**default_call_kwargs(kind, cfg=kind == "flux")).images).abs().max() > 1e-3


def test_unknown_kind():
    with pytest.raises(ValueError, match="'sdxl'.*valid kinds: flux, sd3, pixart, dit, sd"):
        tiny_pipeline("sdxl")
    with pytest.raises(ValueError, match="valid kinds"):
        default_call_kwargs("sdxl")


@pytest.mark.parametrize(("build", "cls"), [(clip_tokenizer, CLIPTokenizer), (t5_tokenizer, T5TokenizerFast)])
def test_tokenizer_round_trip(build, cls, tmp_path):
    tok = build()
    assert isinstance(tok, cls) and len(tok) < 2000
    call = {"padding": "max_length", "max_length": 12, "truncation": True, "return_tensors": "pt"}
    ids = tok(PROMPTS, **call).input_ids
    tok.save_pretrained(tmp_path)
    reloaded = cls.from_pretrained(tmp_path)
    assert torch.equal(reloaded(PROMPTS, **call).input_ids, ids)
    assert reloaded.model_max_length == tok.model_max_length
    assert build().get_vocab() == tok.get_vocab()  # deterministic
    assert ids.shape == (len(PROMPTS), 12)
    assert len({tuple(row.tolist()) for row in ids}) == len(PROMPTS)  # different prompts, different ids
    long = tok(" ".join(DEFAULT_WORDS), **call).input_ids[0]
    assert long[-1] == tok.eos_token_id  # truncation keeps the end token, like the real tokenizers


def test_clip_tokenizer_layout():
    tok = clip_tokenizer(words=["Zyzzyva quokka"])
    ids = tok("a cat", padding="max_length", max_length=6).input_ids
    assert ids[0] == tok.bos_token_id and ids[3] == tok.eos_token_id and ids[4:] == [tok.pad_token_id] * 2
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|startoftext|>", "<|endoftext|>", "<|endoftext|>")
    assert tok.model_max_length == 77
    assert all(len(tok.tokenize(word)) == 1 for word in [*DEFAULT_WORDS, "zyzzyva", "quokka"])
    assert tok.tokenize("A CAT") == tok.tokenize("a cat")  # lowercased like CLIP
    unicode_ids = tok("Ünïcödé 日本", add_special_tokens=False).input_ids  # byte-level: nothing is unknown
    assert unicode_ids and tok.unk_token_id not in unicode_ids


def test_t5_tokenizer_layout():
    tok = t5_tokenizer(words=["quokka"])
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok("a cat", padding="max_length", max_length=6).input_ids
    assert ids[2] == tok.eos_token_id and ids[3:] == [tok.pad_token_id] * 3
    assert tok.model_max_length == 128
    assert all(len(tok.tokenize(word)) == 1 for word in [*DEFAULT_WORDS, "quokka"])
    assert tok("Zebra!", add_special_tokens=False).input_ids != [tok.unk_token_id]  # ASCII character fallback

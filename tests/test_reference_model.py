"""The shipped reference model: offline loading, native defaults, trained behaviour, size and format."""

from __future__ import annotations

import pytest
import torch
from diffusers import DiffusionPipeline, FluxPipeline

from autoaccel.errors import AutoAccelError
from autoaccel.reference import (
    CLASS_NAMES,
    DEFAULT_CALL_KWARGS,
    DEFAULT_STEPS,
    NATIVE_SIZE,
    REFERENCE_MODEL_ID,
    class_index,
    class_prompts,
    classify,
    load_classifier,
    load_reference_pipeline,
    reference_model_path,
)
from autoaccel.reference.classifier import CLASSIFIER_PATH, evaluate_classifier
from autoaccel.reference.data import DatasetMissingError, load_fashion_mnist

pytestmark = pytest.mark.slow

MAX_WEIGHT_BYTES = 25 * 1024 * 1024


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe():
    return load_reference_pipeline()


def test_model_id_and_prompts():
    assert REFERENCE_MODEL_ID == "autoaccel/fashion-flux"
    assert class_prompts("sneaker")[0] == "a photo of a sneaker"
    assert class_prompts(9)[0] == "a photo of an ankle boot"
    assert class_index("Ankle boot") == 9
    with pytest.raises(ValueError, match="unknown Fashion-MNIST class"):
        class_prompts("hat")
    with pytest.raises(ValueError, match="unknown Fashion-MNIST class"):
        class_index(10)


def test_loads_offline_as_plain_flux_pipeline():
    plain = DiffusionPipeline.from_pretrained(str(reference_model_path()))
    assert type(plain) is FluxPipeline
    assert plain.transformer.config.guidance_embeds is False
    image = plain("a photo of a bag", output_type="pt", **DEFAULT_CALL_KWARGS).images
    assert image.shape == (1, 3, NATIVE_SIZE, NATIVE_SIZE)


def test_default_call_uses_native_size_and_steps(pipe):
    steps, text_tokens = [], []
    hook = pipe.transformer.register_forward_hook(
        lambda _m, _a, kwargs, _out: text_tokens.append(kwargs["encoder_hidden_states"].shape[1]), with_kwargs=True
    )
    try:
        out = pipe("a photo of a sneaker", callback_on_step_end=lambda p, i, t, kw: steps.append(i) or {})
    finally:
        hook.remove()
    assert out.images[0].size == (NATIVE_SIZE, NATIVE_SIZE)
    assert len(steps) == DEFAULT_STEPS
    assert set(text_tokens) == {DEFAULT_CALL_KWARGS["max_sequence_length"]}


def test_generated_images_show_their_class(pipe):
    labels = torch.arange(len(CLASS_NAMES)).repeat_interleave(2)
    prompts = [class_prompts(int(c))[0] for c in labels]
    images = pipe(prompts, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (len(prompts), 3, NATIVE_SIZE, NATIVE_SIZE)
    accuracy = (classify(images) == labels).float().mean().item()
    assert accuracy >= 0.6, f"only {accuracy:.0%} of generated images classified as their prompt's class"


def test_true_cfg_runs_and_changes_the_output(pipe):
    prompt = class_prompts("Trouser")[0]
    plain = pipe(prompt, generator=torch.Generator().manual_seed(1), output_type="pt").images
    cfg = pipe(
        prompt, negative_prompt="", true_cfg_scale=2.0, generator=torch.Generator().manual_seed(1), output_type="pt"
    ).images
    assert (cfg - plain).abs().mean().item() > 1e-3
    assert classify(cfg).item() == class_index("Trouser")


def test_weights_are_small_safetensors_only():
    files = [p for p in reference_model_path().rglob("*") if p.is_file()] + [CLASSIFIER_PATH]
    assert sum(p.stat().st_size for p in files) <= MAX_WEIGHT_BYTES
    suffixes = {p.suffix for p in files}
    assert suffixes <= {".json", ".txt", ".safetensors"}, suffixes
    assert sum(p.suffix == ".safetensors" for p in files) == 5  # transformer, vae, 2 text encoders, classifier


def test_classifier_rejects_wrong_size():
    with pytest.raises(ValueError, match="32, 32"):
        classify(torch.zeros(1, 3, 28, 28))


def test_classifier_test_accuracy():
    try:
        test_images, test_labels = load_fashion_mnist("test")
    except DatasetMissingError as err:
        pytest.skip(str(err))
    accuracy = evaluate_classifier(load_classifier(), (test_images[:2000], test_labels[:2000]))
    assert accuracy >= 0.85


def test_missing_classifier_weights_raise(tmp_path):
    with pytest.raises(AutoAccelError, match="autoaccel.reference.train"):
        load_classifier(tmp_path / "missing.safetensors")

"""The shipped reference model: a small FLUX-family text-to-image pipeline trained on Fashion-MNIST.

``load_reference_pipeline()`` returns it with its native defaults (32x32 pixels, 28 steps, 16-token prompts), so
``pipe(["a photo of a sneaker"])`` is the default workload. The same folder also loads with plain
``DiffusionPipeline.from_pretrained(reference_model_path())`` as a ``FluxPipeline`` (then pass `DEFAULT_CALL_KWARGS`).
See ``docs/reference-model.md`` for how it was trained and what it achieves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoaccel.errors import AutoAccelError
from autoaccel.reference.classifier import classify, load_classifier
from autoaccel.reference.model import DEFAULT_STEPS, NATIVE_SIZE, TEXT_MAX_LENGTH, FashionFluxPipeline
from autoaccel.reference.prompts import CLASS_NAMES, all_prompts, class_index, class_prompts

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_CALL_KWARGS",
    "DEFAULT_STEPS",
    "NATIVE_SIZE",
    "REFERENCE_MODEL_ID",
    "TEXT_MAX_LENGTH",
    "FashionFluxPipeline",
    "all_prompts",
    "class_index",
    "class_prompts",
    "classify",
    "load_classifier",
    "load_reference_pipeline",
    "reference_model_path",
]

REFERENCE_MODEL_ID = "autoaccel/fashion-flux"
"""Model id that ``AutoAccel.from_pretrained`` resolves to the shipped folder (no Hub access)."""

DEFAULT_CALL_KWARGS: dict[str, Any] = {
    "height": NATIVE_SIZE,
    "width": NATIVE_SIZE,
    "num_inference_steps": DEFAULT_STEPS,
    "max_sequence_length": TEXT_MAX_LENGTH,
}
"""Call arguments that make a plain ``FluxPipeline`` loaded from the folder behave like `FashionFluxPipeline`."""


def reference_model_path() -> Path:
    """Return the folder of the shipped diffusers pipeline (``autoaccel/reference/fashion_flux``)."""
    path = Path(__file__).with_name("fashion_flux")
    if not (path / "model_index.json").is_file():
        raise AutoAccelError(
            f"reference model folder {path} is missing or incomplete; reinstall autoaccel or retrain it with "
            "`python -m autoaccel.reference.train --seed 0`"
        )
    return path


def load_reference_pipeline(**kwargs: Any) -> FashionFluxPipeline:
    """Load the reference pipeline offline with its native defaults.

    Args:
        **kwargs: forwarded to ``FashionFluxPipeline.from_pretrained`` (e.g. ``torch_dtype``).

    Example:
        >>> pipe = load_reference_pipeline()
        >>> pipe("a photo of a sneaker", output_type="pt").images.shape
        torch.Size([1, 3, 32, 32])
    """
    pipe = FashionFluxPipeline.from_pretrained(str(reference_model_path()), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe

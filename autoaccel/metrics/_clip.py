"""CLIP score (Hessel et al. 2021, scaled as in torchmetrics): ``max(100 * cos(image, prompt), 0)`` per image.

Optional: it runs only with a local ``transformers`` CLIP folder (``AUTOACCEL_CLIP_MODEL`` or ``model=``) and never
downloads anything.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from autoaccel.metrics._inputs import per_image
from autoaccel.metrics._registry import MetricInputError, MetricUnavailableError

CLIP_ENV = "AUTOACCEL_CLIP_MODEL"
CHUNK = 32
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_model_path(model: str | os.PathLike[str] | None = None) -> Path | None:
    """The local CLIP folder: ``model`` if given, else ``$AUTOACCEL_CLIP_MODEL``; ``None`` if neither is a folder."""
    candidate = model if model is not None else os.environ.get(CLIP_ENV)
    if not candidate:
        return None
    path = Path(candidate).expanduser()
    return path if (path / "config.json").is_file() else None


def clip_ready(model: str | os.PathLike[str] | None = None) -> bool:
    """Whether `clip_score` can run: a local CLIP folder is configured (no download is ever attempted)."""
    return clip_model_path(model) is not None


@functools.lru_cache(maxsize=2)
def _load(path: str, device: torch.device) -> tuple[Any, Any, torch.Tensor, torch.Tensor]:
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(path, local_files_only=True).to(device).eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    mean, std = _OPENAI_MEAN, _OPENAI_STD
    config = Path(path) / "preprocessor_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        mean, std = data.get("image_mean", mean), data.get("image_std", std)
    as_tensor = functools.partial(torch.tensor, dtype=torch.float32, device=device)
    return model, tokenizer, as_tensor(mean).view(1, 3, 1, 1), as_tensor(std).view(1, 3, 1, 1)


def _preprocess(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """CLIP's preprocessing in torch: short side to ``size`` (bicubic, antialiased), centre crop, normalise."""
    h, w = images.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(images.float(), size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[..., top : top + size, left : left + size].clamp(0, 1)
    return (x - mean) / std


@per_image("clip_score", needs_reference=False)
def clip_score(
    images: torch.Tensor,
    reference: Any = None,
    *,
    prompts: str | Sequence[str] | None = None,
    model: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """CLIP score of each image against its prompt, in [0, 100]. Higher is better; ``reference`` is ignored.

    Args:
        images: N,3,H,W (or N,F,3,H,W video) float in [0, 1].
        reference: Unused (accepted so that every metric has the same signature).
        prompts: One prompt for all images, or one per image (per video for 5-D inputs).
        model: Local ``transformers`` CLIP folder; default ``$AUTOACCEL_CLIP_MODEL``.

    Raises:
        MetricUnavailableError: No local CLIP model is configured.
        MetricInputError: Missing prompts or a prompt count that does not match the batch.
    """
    path = clip_model_path(model)
    if path is None:
        raise MetricUnavailableError(
            f"clip_score needs a local CLIP model: set {CLIP_ENV}=/path/to/folder (a transformers CLIPModel saved "
            "with save_pretrained, tokenizer included) or pass model=PATH; it is never downloaded"
        )
    if prompts is None:
        raise MetricInputError("clip_score: pass prompts= (one string, or one per image)")
    n = images.shape[0]
    texts = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(texts) != n:
        raise MetricInputError(f"clip_score: got {len(texts)} prompts for {n} images")
    if images.shape[1] != 3:
        raise MetricInputError(f"clip_score: needs RGB images (3 channels), got {images.shape[1]}")
    net, tokenizer, mean, std = _load(str(path), images.device)
    size = net.config.vision_config.image_size
    max_len = net.config.text_config.max_position_embeddings
    scores = []
    with torch.no_grad():
        for start in range(0, n, CHUNK):
            chunk = texts[start : start + CHUNK]
            tokens = tokenizer(chunk, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            pixels = _preprocess(images[start : start + CHUNK], size, mean, std)
            out = net(
                input_ids=tokens["input_ids"].to(images.device),
                attention_mask=tokens["attention_mask"].to(images.device),
                pixel_values=pixels,
            )
            cos = F.cosine_similarity(out.image_embeds, out.text_embeds, dim=-1)
            scores.append((100 * cos).clamp_min(0))
    return torch.cat(scores)

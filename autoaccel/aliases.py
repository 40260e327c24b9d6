"""Friendly model names. The one table of aliases; `resolve` maps an alias to a Hub id or a bundled local path."""

from __future__ import annotations

from pathlib import Path

ALIASES: dict[str, str] = {
    "flux-dev": "black-forest-labs/FLUX.1-dev",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
    "sd3-medium": "stabilityai/stable-diffusion-3-medium-diffusers",
    "sd3.5-large": "stabilityai/stable-diffusion-3.5-large",
    "sd3.5-medium": "stabilityai/stable-diffusion-3.5-medium",
    "pixart-alpha": "PixArt-alpha/PixArt-XL-2-1024-MS",
    "pixart-sigma": "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
    "dit": "facebook/DiT-XL-2-256",
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "fashion-flux": "autoaccel/fashion-flux",
}
"""Alias -> Hub model id."""

BUNDLED = {"autoaccel/fashion-flux"}
"""Model ids that ship inside the package (loaded from disk, never downloaded)."""


def canonical_id(name: str) -> str:
    """The Hub id for an alias (case-insensitive), or ``name`` unchanged."""
    return ALIASES.get(name.lower(), name)


def resolve(name: str | Path) -> tuple[str, str | Path]:
    """``(model_id, what_to_load)``: the canonical id, and a local path or Hub id for ``from_pretrained``."""
    if isinstance(name, Path) or Path(str(name)).expanduser().is_dir():
        path = Path(name).expanduser()
        return str(path), path
    model_id = canonical_id(name)
    if model_id in BUNDLED:
        from .reference import reference_model_path

        return model_id, reference_model_path()
    return model_id, model_id

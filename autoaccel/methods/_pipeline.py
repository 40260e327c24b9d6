"""What the methods need to know about a pipeline: its family, its denoiser and the denoiser's transformer blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

from ..errors import NotApplicableError

# Denoiser class name -> family. Model knowledge is kept as data, so hooks stay generic.
_FAMILIES = {
    "FluxTransformer2DModel": "flux",
    "SD3Transformer2DModel": "sd3",
    "PixArtTransformer2DModel": "pixart",
    "DiTTransformer2DModel": "dit",
    "UNet2DConditionModel": "sd",
}
TRANSFORMER_FAMILIES = ("flux", "sd3", "pixart", "dit")
ALL_FAMILIES = (*TRANSFORMER_FAMILIES, "sd")
# ModuleList attribute names that hold transformer blocks, in execution order.
_BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks", "blocks", "layers")
# Which half of a classifier-free-guidance batch holds the conditional branch, per family.
COND_HALF = {"sd": 1, "sd3": 1, "pixart": 1, "dit": 0}


def denoiser(pipe: Any) -> torch.nn.Module:
    """The pipeline's denoising network (``transformer`` or ``unet``)."""
    for attr in ("transformer", "unet"):
        module = getattr(pipe, attr, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise NotApplicableError(f"{type(pipe).__name__} has no `transformer` or `unet` component to accelerate")


def family(pipe: Any) -> str:
    """The pipeline family (``flux``, ``sd3``, ``pixart``, ``dit``, ``sd``) or ``unknown``."""
    try:
        return _FAMILIES.get(type(denoiser(pipe)).__name__, "unknown")
    except NotApplicableError:
        return "unknown"


def require_family(pipe: Any, method: str, families: tuple[str, ...]) -> str:
    fam = family(pipe)
    if fam not in families:
        raise NotApplicableError(
            f"`{method}` supports the {', '.join(families)} families; "
            f"{type(pipe).__name__} with a {type(denoiser(pipe)).__name__} is `{fam}`"
        )
    return fam


@dataclass(frozen=True)
class Block:
    """A transformer block, its qualified name and where its outputs sit (diffusers' block metadata)."""

    name: str
    module: torch.nn.Module
    meta: TransformerBlockMetadata


def transformer_blocks(model: torch.nn.Module) -> list[Block]:
    """The denoiser's transformer blocks in execution order, with diffusers' metadata for each block class."""
    blocks: list[Block] = []
    for list_name in _BLOCK_LISTS:
        modules = getattr(model, list_name, None)
        if not isinstance(modules, torch.nn.ModuleList):
            continue
        for i, block in enumerate(modules):
            try:
                meta = TransformerBlockRegistry.get(type(block))
            except ValueError as e:
                raise NotApplicableError(f"block class {type(block).__name__} is not known to diffusers' hooks") from e
            blocks.append(Block(f"{list_name}.{i}", block, meta))
    return blocks

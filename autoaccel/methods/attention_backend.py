"""Attention backend: route the denoiser's attention through another kernel of diffusers' attention dispatcher."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from ..errors import NotApplicableError
from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._pipeline import denoiser

Backend = Literal[
    "native",
    "_native_math",
    "_native_efficient",
    "_native_flash",
    "_native_cudnn",
    "flex",
    "flash",
    "_flash_3",
    "sage",
    "xformers",
]


class AttentionBackendConfig(MethodConfig):
    """Knobs of `attention_backend`; each backend needs its package and hardware (checked before applying)."""

    backend: Backend = Field(
        **knob(
            "native",
            "Backend name from diffusers' AttentionBackendName.",
            choices=["native", "_native_flash", "_native_efficient", "flash", "sage"],
        )
    )


def _dispatched_processors(model: torch.nn.Module) -> list[Any]:
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    procs = []
    for module in model.modules():
        if isinstance(module, (Attention, AttentionModuleMixin)):
            proc = getattr(module, "processor", None)
            if proc is not None and hasattr(proc, "_attention_backend"):
                procs.append(proc)
    return procs


def check(pipe: Any, config: AttentionBackendConfig) -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    model = denoiser(pipe)
    if not _dispatched_processors(model):
        raise NotApplicableError(
            f"attention_backend: the attention processors of {type(model).__name__} do not use diffusers' "
            "attention dispatcher"
        )
    try:
        _check_attention_backend_requirements(AttentionBackendName(config.backend))
    except (RuntimeError, ValueError, ImportError) as e:
        raise NotApplicableError(f"attention_backend {config.backend!r}: {e}") from e
    device = next(model.parameters()).device
    if config.backend not in ("native", "_native_math", "flex") and device.type != "cuda":
        raise NotApplicableError(f"attention_backend {config.backend!r} needs a CUDA device (denoiser on {device})")


def apply(pipe: Any, config: AttentionBackendConfig) -> Handle:
    from diffusers.models.attention_dispatch import AttentionBackendName

    check(pipe, config)
    procs = _dispatched_processors(denoiser(pipe))
    previous = [p._attention_backend for p in procs]
    backend = AttentionBackendName(config.backend)
    for p in procs:
        p._attention_backend = backend

    def undo() -> None:
        for p, backend in zip(procs, previous, strict=True):
            p._attention_backend = backend

    return Handle("attention_backend", undo, {"processors": len(procs)})


SPEC = register(
    MethodSpec(
        name="attention_backend",
        config=AttentionBackendConfig,
        apply=apply,
        check=check,
        stage=20,
        group="attention",
        paper="diffusers attention dispatcher (FlashAttention arXiv:2205.14135, SageAttention arXiv:2410.02367)",
        families=("flux", "sd3", "pixart", "dit"),
        summary="Use another attention kernel through diffusers' attention dispatcher.",
        flop_neutral=True,
    )
)

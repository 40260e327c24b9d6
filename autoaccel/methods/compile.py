"""Compile: ``torch.compile`` the denoiser, the VAE decoder and the text encoders (lossless up to float rounding).

Follows PyTorch 2's TorchDynamo/TorchInductor (Ansel et al. 2024, "PyTorch 2", ASPLOS), the way diffusers' docs
recommend (``module.compile()``). Kernel fusion removes per-operator overhead, which dominates small models and small
batches. One compiled ``nn.Module._call_impl`` is shared per set of options, so applying the method again (the
profiler re-applies a recipe around every timed run) hits Dynamo's cache instead of recompiling; only the first
generation after applying pays the compile time (seconds to a minute).

A component that carries hooks of other methods (caches, CFG truncation, attention interception) is not compiled:
their per-step Python decisions would make Dynamo recompile or break the graph every step. With ``denoiser=False``
the method still compiles the VAE decoder and text encoders next to those methods.

Limits: all compiled components share one code object, and Dynamo keeps at most ``torch._dynamo.config
.recompile_limit`` (8) compiled variants of it per process; past that (e.g. many quantization schemes tried in one
process) further variants run eagerly: slower, never wrong. The denoiser FLOP counter runs compiled modules eagerly.
"""

from __future__ import annotations

import functools
import os
import shutil
from typing import Any, Literal

import torch
from pydantic import Field

from ..errors import NotApplicableError
from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._pipeline import ALL_FAMILIES, denoiser

_TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


class CompileConfig(MethodConfig):
    """Knobs of `compile`. Output equals eager up to float rounding; the first call after applying is slow."""

    denoiser: bool = Field(
        **knob(True, "Compile the denoiser (refused while other methods hook it).", choices=[True, False])
    )
    vae: bool = Field(True, description="Compile the VAE decoder.")
    text_encoders: bool = Field(True, description="Compile the text encoders.")
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode ('reduce-overhead' adds CUDA graphs on GPUs)."
    )
    fullgraph: bool = Field(False, description="Fail instead of falling back to eager around graph breaks.")
    dynamic: bool | None = Field(None, description="torch.compile's dynamic-shape setting (None: automatic).")


def _hooked(module: torch.nn.Module) -> bool:
    """Whether any submodule carries diffusers hooks or torch forward hooks (set by other methods)."""
    for m in module.modules():
        registry = getattr(m, "_diffusers_hook", None)
        if registry is not None and registry.hooks:
            return True
        if m._forward_hooks or m._forward_pre_hooks:
            return True
    return False


def _targets(pipe: Any, config: CompileConfig) -> list[torch.nn.Module]:
    targets: list[torch.nn.Module] = []
    if config.denoiser:
        targets.append(denoiser(pipe))
    vae = getattr(pipe, "vae", None)
    if config.vae and isinstance(getattr(vae, "decoder", None), torch.nn.Module):
        targets.append(vae.decoder)
    if config.text_encoders:
        targets += [m for m in (getattr(pipe, n, None) for n in _TEXT_ENCODERS) if isinstance(m, torch.nn.Module)]
    return targets


def _has_cpp_compiler() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


def check(pipe: Any, config: CompileConfig) -> None:
    if not torch._dynamo.is_dynamo_supported():
        raise NotApplicableError("compile: torch.compile is not supported on this Python/platform")
    targets = _targets(pipe, config)
    if not targets:
        raise NotApplicableError(f"compile: {type(pipe).__name__} has none of the components selected to compile")
    devices = {p.device.type for m in targets for p in m.parameters()}
    if "cpu" in devices and not _has_cpp_compiler():
        raise NotApplicableError("compile: TorchInductor needs a C++ compiler for CPU code (install g++ or set CXX)")
    if config.mode == "reduce-overhead" and devices != {"cuda"}:
        raise NotApplicableError("compile: mode 'reduce-overhead' uses CUDA graphs and needs every component on CUDA")
    if config.denoiser and _hooked(targets[0]):
        raise NotApplicableError(
            "compile: the denoiser carries hooks of other methods (caches, CFG truncation, attention interception); "
            "use denoiser=false to compile only the VAE decoder and text encoders"
        )


@functools.cache
def _compiled_call_impl(mode: str, fullgraph: bool, dynamic: bool | None) -> Any:
    """One compiled ``nn.Module._call_impl`` per option set, shared so re-applying reuses Dynamo's cache."""
    return torch.compile(
        torch.nn.Module._call_impl, mode=None if mode == "default" else mode, fullgraph=fullgraph, dynamic=dynamic
    )


def apply(pipe: Any, config: CompileConfig) -> Handle:
    check(pipe, config)
    compiled = _compiled_call_impl(config.mode, config.fullgraph, config.dynamic)
    targets = [m for m in _targets(pipe, config) if not _hooked(m)]
    previous = [m._compiled_call_impl for m in targets]
    for module in targets:
        module._compiled_call_impl = functools.partial(compiled, module)  # what nn.Module.compile() sets

    def undo() -> None:
        for module, before in zip(targets, previous, strict=True):
            module._compiled_call_impl = before

    return Handle("compile", undo, {"compiled_modules": len(targets)})


SPEC = register(
    MethodSpec(
        name="compile",
        config=CompileConfig,
        apply=apply,
        check=check,
        stage=90,
        group="compile",
        paper="torch.compile: TorchDynamo + TorchInductor (Ansel et al. 2024, PyTorch 2, ASPLOS)",
        families=ALL_FAMILIES,
        summary="torch.compile the denoiser, VAE decoder and text encoders (lossless; first call compiles).",
        flop_neutral=True,
    )
)

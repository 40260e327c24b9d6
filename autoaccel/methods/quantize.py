"""Weight quantization of the denoiser's linear layers with torchao's ``quantize_``.

Follows torchao's post-training schemes (int8 weight-only and dynamic int8 after LLM.int8/SmoothQuant-style
per-channel scaling; int4 weight-only after GPTQ/AWQ-style grouped quantization, without calibration; fp8 after
Micikevicius et al. 2022, arXiv:2209.05433). ``quantize_`` cannot be undone, so the original weights are kept
(on the CPU) and put back by ``remove()``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from ..errors import NotApplicableError
from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._pipeline import ALL_FAMILIES, denoiser

Scheme = Literal["int8_weight_only", "int8_dynamic", "int4_weight_only", "fp8_weight_only", "fp8_dynamic"]


class QuantizeConfig(MethodConfig):
    """Knobs of `quantize`. Fewer bits: less memory and, on GPUs with fast low-bit kernels, faster; lower quality."""

    scheme: Scheme = Field(
        **knob(
            "int8_weight_only",
            "Quantization scheme (bits and whether activations are quantized too).",
            choices=["int8_weight_only", "int8_dynamic", "int4_weight_only", "fp8_weight_only", "fp8_dynamic"],
        )
    )
    group_size: int = Field(128, ge=16, le=1024, description="Group size of int4 weight-only quantization.")
    keep: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Regular expressions (re.search on the module name) of layers kept in full precision, "
        "e.g. `^transformer_blocks\\.0\\.`, `proj_out`.",
    )

    @field_validator("keep")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"keep pattern {pattern!r} is not a valid regular expression: {e}") from None
        return patterns

    min_features: int = Field(
        16, ge=1, le=1 << 20, description="Linears with fewer in/out features stay full precision."
    )


def _torchao_config(config: QuantizeConfig, device: torch.device) -> Any:
    try:
        import torchao.quantization as tq
    except ImportError as e:
        raise NotApplicableError("quantize needs torchao: pip install 'autoaccel[quant]'") from e
    if config.scheme == "int8_weight_only":
        return tq.Int8WeightOnlyConfig()
    if config.scheme == "int8_dynamic":
        return tq.Int8DynamicActivationInt8WeightConfig()
    if config.scheme == "int4_weight_only":
        if device.type == "cuda":
            return tq.Int4WeightOnlyConfig(group_size=config.group_size)
        # torchao's Int4WeightOnlyConfig leaves CPU weights untouched; the generic intx path quantizes them.
        from torchao.quantization.granularity import PerGroup

        return tq.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(config.group_size))
    if config.scheme == "fp8_weight_only":
        return tq.Float8WeightOnlyConfig()
    return tq.Float8DynamicActivationFloat8WeightConfig()


def _targets(model: torch.nn.Module, config: QuantizeConfig) -> list[tuple[str, torch.nn.Linear]]:
    patterns = [re.compile(p) for p in config.keep]
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or any(p.search(name) for p in patterns):
            continue
        if min(module.in_features, module.out_features) < config.min_features:
            continue
        if config.scheme == "int4_weight_only" and module.in_features % config.group_size:
            continue
        out.append((name, module))
    return out


def check(pipe: Any, config: QuantizeConfig) -> None:
    model = denoiser(pipe)
    device = next(model.parameters()).device
    if config.scheme.startswith("fp8"):
        capable = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)
        if not capable:
            raise NotApplicableError(
                f"quantize: {config.scheme} needs a CUDA GPU with compute capability 8.9+ (the denoiser is on {device})"
            )
    _torchao_config(config, device)
    if not _targets(model, config):
        raise NotApplicableError(
            "quantize: no linear layer of the denoiser qualifies (see `keep`, `min_features`, `group_size`)"
        )


def apply(pipe: Any, config: QuantizeConfig) -> Handle:
    check(pipe, config)
    from torchao.quantization import quantize_

    model = denoiser(pipe)
    targets = _targets(model, config)
    saved: list[tuple[torch.nn.Linear, dict[str, torch.Tensor | None], torch.device]] = []
    for _, module in targets:
        params = {"weight": module.weight, "bias": module.bias}
        device = module.weight.device
        if device.type != "cpu":  # keep originals off the accelerator
            params = {k: None if v is None else v.detach().to("cpu", copy=True) for k, v in params.items()}
        saved.append((module, params, device))
    chosen = {id(m) for _, m in targets}

    def undo() -> None:
        for module, params, device in saved:
            for key, value in params.items():
                if value is None:
                    continue
                if not isinstance(value, torch.nn.Parameter):
                    value = torch.nn.Parameter(value.to(device), requires_grad=False)
                setattr(module, key, value)

    try:
        quantize_(
            model, _torchao_config(config, next(model.parameters()).device), filter_fn=lambda m, _name: id(m) in chosen
        )
    except Exception:
        undo()
        raise
    return Handle("quantize", undo, {"quantized_linears": len(targets)})


SPEC = register(
    MethodSpec(
        name="quantize",
        config=QuantizeConfig,
        apply=apply,
        check=check,
        stage=10,
        group="weights",
        paper="torchao post-training quantization (int8/int4 weight-only, dynamic int8, fp8 arXiv:2209.05433)",
        families=ALL_FAMILIES,
        summary="Quantize the denoiser's linear layers with torchao (int8, int4, fp8).",
        flop_neutral=True,
    )
)

"""Quantised attention: QK^T in INT8 with per-block scales and K smoothing, softmax in fp32, PV in fp16/bf16/FP8.

Follows SageAttention (Zhang et al. 2024, arXiv:2410.02367; FP8 PV after SageAttention2, arXiv:2411.10958) through
`autoaccel.kernels.quant_attention`: the Triton kernel on CUDA, its plain-torch reference elsewhere (same numerics,
not faster). The self-attention of the targeted transformer blocks is routed through the kernel (how: see
docs/kernels.md); the first ``dense_first_steps`` denoising steps and the first/last ``skip_*_blocks`` blocks stay
exact.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from ..errors import NotApplicableError
from ..kernels import fp8_pv_supported, quant_attention
from . import register
from ._attention import FAMILIES, AttentionKernel, attention_sites, check_backend, install, model_device
from ._base import Handle, MethodConfig, MethodSpec, knob


class QuantAttentionConfig(MethodConfig):
    """Knobs of `quant_attention`. Lower PV precision, fewer warm-up steps or skipped blocks: faster, less exact.

    Example:
        >>> from autoaccel.methods import apply_methods
        >>> handle = apply_methods(pipe, [("quant_attention", QuantAttentionConfig(dense_first_steps=2))])
        >>> image = pipe("a cat").images[0]; handle.remove()
    """

    qk_bits: Literal[8] = Field(
        **knob(8, "Bits of Q and K in QK^T: 8 only (INT4 is rejected by the kernel, see docs/kernels.md).")
    )
    pv_dtype: Literal["auto", "fp16", "bf16", "fp8"] = Field(
        **knob(
            "auto",
            "Precision of P and V in PV (fp32 accumulation): auto (bf16 for a bf16 model, else fp16), fp16, bf16, or "
            "fp8 e4m3 (faster; needs a CUDA GPU with compute capability >= 8.9).",
            choices=["auto", "fp8"],
        )
    )
    dense_first_steps: int = Field(
        ge=0, le=1000, **knob(0, "Denoising steps at the start that use exact attention.", low=0, high=4)
    )
    skip_first_blocks: int = Field(
        ge=0, le=1000, **knob(0, "Transformer blocks at the start that keep exact attention.", low=0, high=2)
    )
    skip_last_blocks: int = Field(
        ge=0, le=1000, **knob(0, "Transformer blocks at the end that keep exact attention.", low=0, high=2)
    )
    block_m: Literal[16, 32, 64, 128] = Field(
        **knob(128, "Query tokens per INT8 scale block and kernel tile. Smaller: more accurate, slower.")
    )
    block_n: Literal[16, 32, 64, 128] = Field(
        **knob(64, "Key tokens per INT8 scale block and kernel tile. Smaller: more accurate, slower.")
    )
    backend: Literal["auto", "triton", "torch"] = Field(
        **knob("auto", "Kernel implementation: auto (Triton on CUDA, the torch reference otherwise), triton, torch.")
    )


class _QuantKernel(AttentionKernel):
    def __init__(self, config: QuantAttentionConfig) -> None:
        self.config = config

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None, text_tokens: int
    ) -> torch.Tensor:
        c = self.config
        return quant_attention(
            q, k, v, qk_bits=c.qk_bits, pv_dtype=c.pv_dtype, block_m=c.block_m, block_n=c.block_n, scale=scale,
            backend=c.backend,
        )  # fmt: skip


def check(pipe: Any, config: QuantAttentionConfig) -> None:
    attention_sites(
        pipe, "quant_attention", skip_first_blocks=config.skip_first_blocks, skip_last_blocks=config.skip_last_blocks
    )
    device = model_device(pipe)
    if config.pv_dtype == "fp8" and not fp8_pv_supported(device):
        raise NotApplicableError(
            f"quant_attention: pv_dtype='fp8' needs a CUDA GPU with compute capability >= 8.9 (Ada, Hopper); the "
            f"denoiser is on {device}. Use pv_dtype='auto', 'fp16' or 'bf16'"
        )
    check_backend("quant_attention", config.backend, device)


def apply(pipe: Any, config: QuantAttentionConfig) -> Handle:
    check(pipe, config)
    sites = attention_sites(
        pipe, "quant_attention", skip_first_blocks=config.skip_first_blocks, skip_last_blocks=config.skip_last_blocks
    )
    return install(
        pipe, "quant_attention", sites, _QuantKernel(config), dense_first_steps=config.dense_first_steps, stats={}
    )


SPEC = register(
    MethodSpec(
        name="quant_attention",
        config=QuantAttentionConfig,
        apply=apply,
        check=check,
        stage=25,
        group="attention",
        paper="SageAttention (arXiv:2410.02367), SageAttention2 FP8 PV (arXiv:2411.10958)",
        families=FAMILIES,
        summary="INT8 QK^T with smoothed K, fp32 softmax, 16-bit or FP8 PV in the transformer's self-attention.",
        activity=("kernel_calls",),
        flop_neutral=True,
    )
)

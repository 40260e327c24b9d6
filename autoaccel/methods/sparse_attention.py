"""Block-sparse attention: per query block, keep only the key blocks that hold most of the estimated attention.

Follows SpargeAttn (Zhang et al. 2025, arXiv:2502.18137), DraftAttention (Shen et al. 2025, arXiv:2505.14708) and
Sparse VideoGen (Xi et al. 2025, arXiv:2502.01776, for the dense warm-up steps) through
`autoaccel.kernels.sparse_attention`: block importance is estimated from mean-pooled Q and K blocks, each query block
keeps the key blocks covering ``keep_ratio`` of the blocks (``topk``) or of the estimated mass (``topp``), and the
diagonal and text blocks are always kept. The Triton kernel runs on CUDA, its plain-torch reference elsewhere (same
numerics, not faster). ``stats`` reports the kept fraction of (query block, key block) tiles, i.e. of the QK^T and PV
FLOPs.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from ..kernels import sparse_attention, sparse_block_mask
from . import register
from ._attention import FAMILIES, AttentionKernel, attention_sites, check_backend, install, model_device
from ._base import Handle, MethodConfig, MethodSpec, knob


class SparseAttentionConfig(MethodConfig):
    """Knobs of `sparse_attention`. Lower ``keep_ratio``, fewer warm-up steps or skipped blocks: faster, less exact.

    Example:
        >>> from autoaccel.methods import apply_methods
        >>> handle = apply_methods(pipe, [("sparse_attention", SparseAttentionConfig(keep_ratio=0.3))])
        >>> image = pipe("a cat").images[0]; handle.stats  # kept_blocks / total_blocks: the kept FLOP fraction
    """

    keep_ratio: float = Field(
        gt=0.0,
        le=1.0,
        **knob(
            0.5,
            "Per query block, the fraction of key blocks (topk) or of estimated attention mass (topp) kept; 1 is "
            "dense attention.",
            low=0.1,
            high=0.9,
        ),
    )
    selection: Literal["topk", "topp"] = Field(
        **knob(
            "topk",
            "topk: a fixed budget of ceil(keep_ratio * key blocks) per query block (predictable cost); topp: the "
            "fewest blocks holding keep_ratio of the estimated mass (adaptive cost).",
            choices=["topk", "topp"],
        )
    )
    block_size: Literal[16, 32, 64, 128] = Field(
        **knob(
            64, "Key tokens per sparsity block. Larger: cheaper estimate and kernel, coarser.", choices=[32, 64, 128]
        )
    )
    q_block_size: Literal[16, 32, 64, 128] = Field(
        **knob(128, "Query tokens per block (the kernel's query tile); 128 is fastest on GPUs.")
    )
    dense_text_queries: bool = Field(
        **knob(True, "Query blocks holding text tokens attend to every key block.", choices=[True, False])
    )
    dense_first_steps: int = Field(
        ge=0, le=1000, **knob(2, "Denoising steps at the start that use dense attention.", low=0, high=8)
    )
    skip_first_blocks: int = Field(
        ge=0, le=1000, **knob(0, "Transformer blocks at the start that keep dense attention.", low=0, high=2)
    )
    skip_last_blocks: int = Field(
        ge=0, le=1000, **knob(0, "Transformer blocks at the end that keep dense attention.", low=0, high=2)
    )
    backend: Literal["auto", "triton", "torch"] = Field(
        **knob("auto", "Kernel implementation: auto (Triton on CUDA, the torch reference otherwise), triton, torch.")
    )


class _SparseKernel(AttentionKernel):
    """Estimates the block mask, runs the kernel on it and counts kept / total tiles."""

    text_aware = True

    def __init__(self, config: SparseAttentionConfig, stats: dict[str, int]) -> None:
        self.config, self.stats = config, stats
        stats.update({"kept_blocks": 0, "total_blocks": 0})
        self._pending: torch.Tensor | None = None  # kept tiles not yet synchronised to the host

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None, text_tokens: int
    ) -> torch.Tensor:
        c = self.config
        mask = sparse_block_mask(
            q, k, keep_ratio=c.keep_ratio, block_size=c.block_size, q_block_size=c.q_block_size,
            selection=c.selection, text_tokens=text_tokens, dense_text_queries=c.dense_text_queries, scale=scale,
        )  # fmt: skip
        kept = mask.sum()
        self._pending = kept if self._pending is None else self._pending + kept
        self.stats["total_blocks"] += mask.numel()
        out = sparse_attention(
            q, k, v, keep_ratio=c.keep_ratio, block_size=c.block_size, q_block_size=c.q_block_size,
            block_mask=mask, scale=scale, backend=c.backend,
        )  # fmt: skip
        if q.device.type == "cpu":
            self.flush()
        return out

    def flush(self) -> None:
        if self._pending is not None:
            self.stats["kept_blocks"] += int(self._pending)
            self._pending = None


def check(pipe: Any, config: SparseAttentionConfig) -> None:
    attention_sites(
        pipe, "sparse_attention", skip_first_blocks=config.skip_first_blocks, skip_last_blocks=config.skip_last_blocks
    )
    check_backend("sparse_attention", config.backend, model_device(pipe))


def apply(pipe: Any, config: SparseAttentionConfig) -> Handle:
    check(pipe, config)
    sites = attention_sites(
        pipe, "sparse_attention", skip_first_blocks=config.skip_first_blocks, skip_last_blocks=config.skip_last_blocks
    )
    stats: dict[str, int] = {}
    kernel = _SparseKernel(config, stats)
    return install(pipe, "sparse_attention", sites, kernel, dense_first_steps=config.dense_first_steps, stats=stats)


SPEC = register(
    MethodSpec(
        name="sparse_attention",
        config=SparseAttentionConfig,
        apply=apply,
        check=check,
        stage=25,
        group="attention",
        paper="SpargeAttn (arXiv:2502.18137), DraftAttention (arXiv:2505.14708), Sparse VideoGen (arXiv:2502.01776)",
        families=FAMILIES,
        summary="Block-sparse self-attention keeping the key blocks with the most estimated attention per query block.",
        activity=("kernel_calls",),
    )
)

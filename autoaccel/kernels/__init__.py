"""Attention kernels for DiTs: INT8-QK quantised attention and block-sparse attention.

Each has a Triton implementation (CUDA, or the CPU interpreter under ``TRITON_INTERPRET=1``) and a plain-torch
reference with the same numerics, used on CPU and as the test oracle. Layout (batch, heads, tokens, head_dim),
non-causal, no mask. See docs/kernels.md.
"""

from autoaccel.kernels._common import KernelArgumentError, fp8_pv_supported, triton_available, triton_interpret_mode
from autoaccel.kernels.attention import PV_DTYPES, QK_BITS, quant_attention, sparse_attention
from autoaccel.kernels.block_sparse import block_mask_to_indices, kept_fraction, sparse_block_mask
from autoaccel.kernels.reference import (
    attention_reference,
    quant_attention_reference,
    quantize_per_block,
    quantize_v_fp8,
    smoothing_mean,
)

__all__ = [
    "PV_DTYPES",
    "QK_BITS",
    "KernelArgumentError",
    "attention_reference",
    "block_mask_to_indices",
    "fp8_pv_supported",
    "kept_fraction",
    "quant_attention",
    "quant_attention_reference",
    "quantize_per_block",
    "quantize_v_fp8",
    "smoothing_mean",
    "sparse_attention",
    "sparse_block_mask",
    "triton_available",
    "triton_interpret_mode",
]

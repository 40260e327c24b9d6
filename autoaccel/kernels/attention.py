"""Public attention entry points: INT8-QK quantised attention and block-sparse attention."""

from __future__ import annotations

import torch

from autoaccel.kernels._common import (
    Backend,
    KernelArgumentError,
    PVDtype,
    check_block,
    check_qkv,
    fp8_pv_supported,
    num_blocks,
    resolve_backend,
    softmax_scale,
)
from autoaccel.kernels.block_sparse import Selection, block_mask_to_indices, sparse_block_mask
from autoaccel.kernels.reference import attention_reference, quant_attention_reference

QK_BITS = (8,)
PV_DTYPES = ("auto", "fp32", "fp16", "bf16", "fp8")


def _resolve_pv_dtype(pv_dtype: str, v: torch.Tensor) -> str:
    if pv_dtype not in PV_DTYPES:
        raise KernelArgumentError(f"pv_dtype must be one of {PV_DTYPES}, got {pv_dtype!r}")
    if pv_dtype == "auto":
        return "bf16" if v.dtype == torch.bfloat16 else "fp16"
    return pv_dtype


def _check_qk_bits(qk_bits: int) -> None:
    if qk_bits == 4 and not isinstance(qk_bits, bool):
        raise KernelArgumentError(
            "qk_bits=4 is not supported: Triton has no INT4 tensor-core dot, so INT4 would be no faster than INT8, "
            "and per-block INT4 QK^T is several times less accurate (see docs/kernels.md); use qk_bits=8"
        )
    if qk_bits not in QK_BITS or isinstance(qk_bits, bool):
        raise KernelArgumentError(f"qk_bits must be 8, got {qk_bits!r}")


def quant_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    qk_bits: int = 8,
    pv_dtype: PVDtype = "auto",
    block_m: int = 128,
    block_n: int = 64,
    scale: float | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Attention with QK^T in INT8 (SageAttention-style), softmax in fp32 and PV in ``pv_dtype``.

    Q is quantised with one scale per ``block_m`` query tokens, K with one scale per ``block_n`` key tokens after
    subtracting its mean over tokens (exact for softmax). Non-causal, no mask; layout as in
    ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        q: (B, H, N_q, D) queries, float16 / bfloat16 / float32; any strides.
        k: (B, H, N_k, D) keys, same dtype.
        v: (B, H, N_k, D) values, same dtype.
        qk_bits: Bits of Q and K; only 8 (4 raises, see docs/kernels.md).
        pv_dtype: Precision of P and V in the PV product (fp32 accumulate): ``"auto"`` (bf16 for bfloat16 inputs,
            fp16 otherwise), ``"fp16"``, ``"bf16"``, ``"fp32"``, or ``"fp8"`` (float8 e4m3 with per-channel V scales;
            Triton needs compute capability >= 8.9, see :func:`fp8_pv_supported`). Lower is faster, less accurate.
        block_m: Query tokens per INT8 scale block and kernel tile (power of two >= 16). Smaller is more accurate.
        block_n: Key tokens per INT8 scale block and kernel tile (power of two >= 16).
        scale: Softmax scale, ``1/sqrt(D)`` by default.
        backend: ``"auto"`` (Triton for CUDA tensors when triton is installed, else the torch reference),
            ``"triton"`` (CPU tensors only under ``TRITON_INTERPRET=1``) or ``"torch"``.

    Returns:
        (B, H, N_q, D) tensor in ``q.dtype``.

    Example:
        >>> q, k, v = torch.randn(3, 1, 2, 96, 32).unbind(0)
        >>> quant_attention(q, k, v, block_m=32, block_n=16, backend="torch").shape
        torch.Size([1, 2, 96, 32])
    """
    check_qkv(q, k, v)
    _check_qk_bits(qk_bits)
    check_block("block_m", block_m)
    check_block("block_n", block_n)
    pv = _resolve_pv_dtype(pv_dtype, v)
    scale = softmax_scale(scale, q.shape[3])
    if resolve_backend(backend, q.device) == "torch":
        return quant_attention_reference(q, k, v, scale=scale, pv_dtype=pv, block_m=block_m, block_n=block_n)
    if pv == "fp8" and not fp8_pv_supported(q.device):
        raise KernelArgumentError(
            f"pv_dtype='fp8' needs a GPU with compute capability >= 8.9 (Ada, Hopper), {q.device} has less; "
            "use pv_dtype='fp16' or 'bf16'"
        )
    from autoaccel.kernels._triton_attention import attention_triton

    return attention_triton(q, k, v, scale=scale, block_m=block_m, block_n=block_n, qk_bits=qk_bits, pv_dtype=pv)


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    keep_ratio: float,
    block_size: int = 64,
    q_block_size: int = 128,
    selection: Selection = "topk",
    text_tokens: int = 0,
    dense_text_queries: bool = True,
    block_mask: torch.Tensor | None = None,
    scale: float | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Block-sparse attention over the key blocks chosen by :func:`sparse_block_mask` (or a given ``block_mask``).

    The kept blocks are computed exactly (QK^T and PV in the input dtype, fp32 softmax and accumulation); dropped
    blocks get zero weight. With ``keep_ratio=1`` every block is kept and the result is dense attention.

    Args:
        q: (B, H, N_q, D) queries, float16 / bfloat16 / float32; any strides.
        k: (B, H, N_k, D) keys, same dtype.
        v: (B, H, N_k, D) values, same dtype.
        keep_ratio: In (0, 1]; fraction of key blocks (``"topk"``) or of estimated attention mass (``"topp"``) kept
            per query block. Lower is faster, less accurate.
        block_size: Key tokens per block (power of two >= 16), the sparsity granularity.
        q_block_size: Query tokens per block (power of two >= 16), the kernel's query tile.
        selection: ``"topk"`` (fixed budget) or ``"topp"`` (mass threshold), see :func:`sparse_block_mask`.
        text_tokens: The first ``text_tokens`` key tokens are always attended to (FLUX: 512 text tokens first).
        dense_text_queries: Query blocks holding text tokens attend to every key block.
        block_mask: Optional precomputed (B, H, ceil(N_q / q_block_size), ceil(N_k / block_size)) bool mask; when
            given, the estimation knobs (keep_ratio, selection, text_tokens, dense_text_queries) are not used.
        scale: Softmax scale, ``1/sqrt(D)`` by default.
        backend: ``"auto"``, ``"triton"`` or ``"torch"``, as in :func:`quant_attention`.

    Returns:
        (B, H, N_q, D) tensor in ``q.dtype``.

    Example:
        >>> q, k, v = torch.randn(3, 1, 2, 96, 32).unbind(0)
        >>> out = sparse_attention(q, k, v, keep_ratio=0.5, block_size=16, q_block_size=32, backend="torch")
    """
    check_qkv(q, k, v)
    check_block("block_size", block_size)
    check_block("q_block_size", q_block_size)
    scale = softmax_scale(scale, q.shape[3])
    b, h, n_q, _ = q.shape
    n_k = k.shape[2]
    if block_mask is None:
        block_mask = sparse_block_mask(
            q, k, keep_ratio=keep_ratio, block_size=block_size, q_block_size=q_block_size, selection=selection,
            text_tokens=text_tokens, dense_text_queries=dense_text_queries, scale=scale,
        )  # fmt: skip
    else:
        _check_block_mask(block_mask, (b, h, num_blocks(n_q, q_block_size), num_blocks(n_k, block_size)), q.device)
    if resolve_backend(backend, q.device) == "torch":
        row_keep = block_mask.repeat_interleave(q_block_size, dim=2)[:, :, :n_q]
        return attention_reference(q, k, v, scale=scale, block_n=block_size, row_keep=row_keep)
    from autoaccel.kernels._triton_attention import attention_triton

    return attention_triton(
        q, k, v, scale=scale, block_m=q_block_size, block_n=block_size, kv_indices=block_mask_to_indices(block_mask)
    )


def _check_block_mask(mask: torch.Tensor, shape: tuple[int, int, int, int], device: torch.device) -> None:
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise KernelArgumentError(
            f"block_mask must be a bool tensor of shape {shape} (B, H, query blocks, key blocks), got "
            f"{mask.dtype} {tuple(mask.shape)}"
        )
    if mask.device != device:
        raise KernelArgumentError(f"block_mask is on {mask.device}, q on {device}")
    if not bool(mask.any(dim=-1).all()):
        raise KernelArgumentError("block_mask keeps no key block for some query block; keep at least one per row")

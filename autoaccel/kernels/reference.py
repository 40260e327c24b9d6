"""Plain-torch reference of the attention kernels: the CPU fallback and the test oracle.

Every function here computes the same numerics as the Triton kernels in ``_triton_attention.py``: same quantisation
formulas, same order of the scale multiplications, base-2 exponentials, and the same online softmax over key blocks.
They differ only in the order of floating-point sums inside a block (and GPU ``exp2`` is approximate). Layout is
(batch, heads, tokens, head_dim) throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from autoaccel.kernels._common import FP8_MAX, INT8_MAX, LOG2E, PV_TORCH_DTYPES, num_blocks


def smoothing_mean(k: torch.Tensor) -> torch.Tensor:
    """Mean of ``k`` over tokens, per (batch, head, channel), in fp32: shape (B, H, 1, D).

    Subtracting it from every key adds ``-q . mean`` to all scores of a query row, which softmax ignores; it removes the
    channel offsets that would otherwise dominate the per-block INT8 range of K (SageAttention).
    """
    return k.float().mean(dim=2, keepdim=True)


def quantize_per_block(
    x: torch.Tensor, block: int, mean: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric INT8 quantisation with one scale per block of ``block`` tokens per (batch, head).

    ``x_fp32 = x - mean``; ``scale = absmax(block) / 127`` (1 for an all-zero block);
    ``x_int8 = trunc(x_fp32 / scale +- 0.5)`` (round half away from zero). The Triton quantisation kernel is
    bit-identical to this on the same device.

    Args:
        x: (B, H, N, D) tensor.
        block: Tokens per scale block; the last block of a length not divisible by it is partial.
        mean: Optional (B, H, 1, D) fp32 tensor subtracted before quantising (K smoothing).

    Returns:
        ``(x_int8, scales)``: (B, H, N, D) int8 and (B, H, ceil(N / block)) fp32.
    """
    b, h, n, d = x.shape
    nb = num_blocks(n, block)
    xf = x.float()
    if mean is not None:
        xf = xf - mean
    xf = torch.nn.functional.pad(xf, (0, 0, 0, nb * block - n)).view(b, h, nb, block, d)
    amax = xf.abs().amax(dim=(-2, -1))
    scales = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    xs = xf / scales[..., None, None]
    x_int = torch.where(xs >= 0, xs + 0.5, xs - 0.5).to(torch.int8)  # float -> int truncates toward zero
    return x_int.view(b, h, nb * block, d)[:, :, :n], scales


def quantize_v_fp8(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FP8 (e4m3) quantisation of V with one scale per (batch, head, channel) over tokens.

    Returns:
        ``(v_fp8, out_scale)``: (B, H, N, D) ``torch.float8_e4m3fn`` with ``v ~ v_fp8 * absmax / 448``, and the
        (B, H, D) fp32 factor ``absmax / 448 / 448`` that turns ``(448 P) @ v_fp8`` back into ``P @ v``.
    """
    vf = v.float()
    amax = vf.abs().amax(dim=2, keepdim=True)
    v_scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    v_fp8 = (vf / v_scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return v_fp8, (v_scale / FP8_MAX).squeeze(2)


def _exact_int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` of int8 tensors, exact: fp32 holds every partial sum exactly while D * 127^2 < 2^24."""
    dtype = torch.float32 if a.shape[-1] <= 1024 else torch.float64
    return (a.to(dtype) @ b.to(dtype).transpose(-1, -2)).float()


def _pv(p: torch.Tensor, v: torch.Tensor, pv_dtype: str) -> torch.Tensor:
    """``P @ V`` with P cast to ``pv_dtype`` (V already in it) and fp32 accumulation; P in [0, 1]."""
    if pv_dtype == "fp8":
        p = (p * FP8_MAX).clamp(max=FP8_MAX)
    if pv_dtype != "fp32":
        p = p.to(PV_TORCH_DTYPES[pv_dtype]).float()
    return p @ v.float()


def _online_attention(
    score_fn: Callable[[slice], torch.Tensor],
    v: torch.Tensor,
    *,
    n_q: int,
    block_n: int,
    pv_dtype: str,
    v_out_scale: torch.Tensor | None = None,
    row_keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """The kernel's online softmax: one update per key block of ``block_n`` tokens, in increasing order.

    Args:
        score_fn: ``f(cols) -> (B, H, n_q, len(cols))`` fp32 log2-domain scores of the key tokens ``cols``.
        v: (B, H, N_k, D) values already in ``pv_dtype`` (float8 e4m3 for ``"fp8"``).
        n_q: Number of queries.
        block_n: Key tokens per block.
        pv_dtype: ``"fp32" | "fp16" | "bf16" | "fp8"``.
        v_out_scale: (B, H, D) output factor of FP8 V (``"fp8"`` only).
        row_keep: Optional (B, H, n_q, n_key_blocks) bool: which key blocks each query row visits (block sparsity);
            a skipped block leaves the row's running state untouched, as in the kernel.

    Returns:
        (B, H, n_q, D) fp32 output.
    """
    b, h, n_k, d = v.shape
    m = torch.full((b, h, n_q), float("-inf"), device=v.device)
    l_sum = torch.zeros((b, h, n_q), device=v.device)
    acc = torch.zeros((b, h, n_q, d), device=v.device)
    for j in range(num_blocks(n_k, block_n)):
        cols = slice(j * block_n, min((j + 1) * block_n, n_k))
        s = score_fn(cols)
        m_new = torch.maximum(m, s.amax(dim=-1))
        alpha = torch.exp2(m - m_new)
        p = torch.exp2(s - m_new[..., None])
        l_new = l_sum * alpha + p.sum(dim=-1)
        acc_new = acc * alpha[..., None] + _pv(p, v[:, :, cols], pv_dtype)
        if row_keep is None:
            m, l_sum, acc = m_new, l_new, acc_new
        else:
            keep = row_keep[..., j]
            m = torch.where(keep, m_new, m)
            l_sum = torch.where(keep, l_new, l_sum)
            acc = torch.where(keep[..., None], acc_new, acc)
    out = acc / l_sum[..., None]
    if v_out_scale is not None:
        out = out * v_out_scale[:, :, None, :]
    return out


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    block_n: int = 64,
    row_keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dense (or block-sparse) attention with the numerics of the non-quantised kernel.

    ``S = (q @ k^T) * (scale * log2 e)`` in fp32, online base-2 softmax over key blocks of ``block_n`` tokens in fp32,
    P cast to ``v.dtype`` (kept fp32 for fp32 inputs), ``P @ V`` accumulated in fp32, output in ``q.dtype``.

    Args:
        q, k, v: (B, H, N, D) tensors of one dtype.
        scale: Softmax scale.
        block_n: Key tokens per block of the online softmax.
        row_keep: Optional (B, H, N_q, n_key_blocks) bool of the key blocks each query row attends to; ``None`` is
            dense attention (bit-identical to an all-True ``row_keep``).
    """
    qk_scale = torch.tensor(scale * LOG2E, dtype=torch.float32, device=q.device)
    pv_dtype = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(v.dtype, "fp32")
    qf, kf = q.float(), k.float()

    def scores(cols: slice) -> torch.Tensor:
        return (qf @ kf[:, :, cols].transpose(-1, -2)) * qk_scale

    out = _online_attention(scores, v, n_q=q.shape[2], block_n=block_n, pv_dtype=pv_dtype, row_keep=row_keep)
    return out.to(q.dtype)


def quant_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    pv_dtype: str,
    block_m: int,
    block_n: int,
) -> torch.Tensor:
    """INT8 QK^T attention, same numerics as the Triton quant kernel (arguments are validated by the caller).

    Q is quantised per ``block_m`` query tokens, K (after subtracting its per-channel token mean) per ``block_n`` key
    tokens; ``S = int32(q8 @ k8^T) * ((sq * sk) * scale * log2 e)``; online base-2 softmax in fp32; P cast to
    ``pv_dtype`` (``"fp8"``: ``448 P`` and V with per-channel scales in float8 e4m3) and ``P @ V`` accumulated in fp32.
    """
    n_q = q.shape[2]
    q8, sq = quantize_per_block(q, block_m)
    k8, sk = quantize_per_block(k, block_n, mean=smoothing_mean(k))
    sq_rows = sq.repeat_interleave(block_m, dim=-1)[..., :n_q, None]
    qk_scale = torch.tensor(scale * LOG2E, dtype=torch.float32, device=q.device)
    v_out_scale = None
    if pv_dtype == "fp8":
        v, v_out_scale = quantize_v_fp8(v)
    else:
        v = v.to(PV_TORCH_DTYPES[pv_dtype])

    def scores(cols: slice) -> torch.Tensor:
        sk_block = sk[:, :, cols.start // block_n, None, None]
        return _exact_int_matmul(q8, k8[:, :, cols]) * ((sq_rows * sk_block) * qk_scale)

    out = _online_attention(scores, v, n_q=n_q, block_n=block_n, pv_dtype=pv_dtype, v_out_scale=v_out_scale)
    return out.to(q.dtype)

"""Triton kernels: per-block INT8 quantisation and one fused attention kernel (FlashAttention-style online softmax).

The attention kernel is specialised by constexpr flags: INT8 QK^T with per-block scales (``QUANT_QK``), FP8 PV
(``PV_FP8``) and block sparsity (``SPARSE``: iterate only over the kept key blocks listed per query block). Its
numerics are mirrored by ``reference.py``.

This module imports triton and is itself imported lazily. Triton fixes the interpreter mode when it is first imported
(its own library functions such as ``tl.max`` are decorated then), so ``TRITON_INTERPRET=1`` must be in the environment
before anything imports triton; :func:`get_kernels` raises a clear error otherwise. The kernel functions are wrapped
by ``triton.jit`` at first use.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import triton
import triton.language as tl

from autoaccel.kernels._common import LOG2E, KernelArgumentError, num_blocks, triton_interpret_mode
from autoaccel.kernels.reference import quantize_v_fp8, smoothing_mean


def _quantize_kernel(
    X,
    MEAN,
    XQ,
    SCALE,
    stride_xb,
    stride_xh,
    stride_xn,
    stride_xd,
    H,
    N,
    HEAD_DIM,
    n_blocks,
    HAS_MEAN: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One program per (block, batch * head): x - mean, absmax / 127 scale, round half away from zero to int8."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = pid_bh // H
    off_h = pid_bh % H
    offs_n = pid_n * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, BLOCK_D)
    valid = (offs_n[:, None] < N) & (offs_d[None, :] < HEAD_DIM)
    x_ptrs = X + off_b * stride_xb + off_h * stride_xh + offs_n[:, None] * stride_xn + offs_d[None, :] * stride_xd
    x = tl.load(x_ptrs, mask=valid, other=0.0).to(tl.float32)
    if HAS_MEAN:
        mean = tl.load(MEAN + pid_bh * HEAD_DIM + offs_d, mask=offs_d < HEAD_DIM, other=0.0)
        x = tl.where(valid, x - mean[None, :], 0.0)
    amax = tl.max(tl.max(tl.abs(x), axis=1), axis=0)
    scale = tl.where(amax > 0, tl.div_rn(amax, 127.0), 1.0)
    xs = tl.div_rn(x, scale)
    x_int = tl.where(xs >= 0, xs + 0.5, xs - 0.5).to(tl.int8)  # float -> int truncates toward zero
    xq_ptrs = XQ + pid_bh * N * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(xq_ptrs, x_int, mask=valid)
    tl.store(SCALE + pid_bh * n_blocks + pid_n, scale)


def _attention_kernel(
    Q,
    K,
    V,
    OUT,
    SQ,
    SK,
    SV,
    KV_IDX,
    KV_CNT,
    stride_qb,
    stride_qh,
    stride_qn,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_ob,
    stride_oh,
    stride_on,
    stride_od,
    H,
    N_Q,
    N_K,
    HEAD_DIM,
    qk_scale,
    n_q_blocks,
    n_k_blocks,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    QUANT_QK: tl.constexpr,
    PV_FP8: tl.constexpr,
    SPARSE: tl.constexpr,
    QK_IEEE: tl.constexpr,
    PV_IEEE: tl.constexpr,
    UPCAST_QK: tl.constexpr,
    UPCAST_PV: tl.constexpr,
    EVEN_N: tl.constexpr,
    EVEN_D: tl.constexpr,
    ROUND_P: tl.constexpr,
    ROUND_OUT: tl.constexpr,
):
    """One program per (query block, batch * head); scores are in the log2 domain (``qk_scale`` holds log2 e)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = pid_bh // H
    off_h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q_ptrs = Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=(offs_m[:, None] < N_Q) & d_ok[None, :], other=0)
    if UPCAST_QK:
        q = q.to(tl.float32)
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh
    if QUANT_QK:
        sq = tl.load(SQ + pid_bh * n_q_blocks + pid_m)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    if SPARSE:
        row = pid_bh * n_q_blocks + pid_m
        n_iter = tl.load(KV_CNT + row)
    else:
        n_iter = n_k_blocks
    for it in range(0, n_iter):
        if SPARSE:
            kb = tl.load(KV_IDX + row * n_k_blocks + it)
        else:
            kb = it
        offs_n = kb * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N_K
        k_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd  # (BLOCK_D, BLOCK_N): K^T
        if EVEN_N and EVEN_D:
            k = tl.load(k_ptrs)
        else:
            k = tl.load(k_ptrs, mask=n_ok[None, :] & d_ok[:, None], other=0)
        if QUANT_QK:
            sk = tl.load(SK + pid_bh * n_k_blocks + kb)
            s = tl.dot(q, k, out_dtype=tl.int32).to(tl.float32) * ((sq * sk) * qk_scale)
        elif UPCAST_QK:
            s = tl.dot(q, k.to(tl.float32)) * qk_scale
        elif QK_IEEE:
            s = tl.dot(q, k, input_precision="ieee") * qk_scale
        else:
            s = tl.dot(q, k) * qk_scale
        if not EVEN_N:
            s = tl.where(n_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None]
        v_ptrs = v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if EVEN_N and EVEN_D:
            v = tl.load(v_ptrs)
        else:
            v = tl.load(v_ptrs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        if PV_FP8:
            p = tl.minimum(p * 448.0, 448.0)
        if ROUND_P == 1:  # interpreter only: pre-round to bfloat16 (Veltkamp split, 8 significant bits)
            p_hi = p * 65537.0
            p = p_hi - (p_hi - p)
        elif ROUND_P == 2:  # interpreter only: pre-round to float8 e4m3 (4 significant bits; subnormal step 2^-9)
            p_hi = p * 1048577.0
            p = tl.where(p < 0.015625, (p + 24576.0) - 24576.0, p_hi - (p_hi - p))
        p_lp = p.to(V.dtype.element_ty)
        if UPCAST_PV:
            acc += tl.dot(p_lp.to(tl.float32), v.to(tl.float32))
        elif PV_IEEE:
            acc = tl.dot(p_lp, v, acc, input_precision="ieee")
        else:
            acc = tl.dot(p_lp, v, acc)
        m_i = m_new

    out = acc / l_i[:, None]
    if PV_FP8:
        sv = tl.load(SV + pid_bh * HEAD_DIM + offs_d, mask=d_ok, other=0.0)
        out = out * sv[None, :]
    if ROUND_OUT:  # interpreter only: pre-round to bfloat16 so that the truncating cast below is exact
        out_hi = out * 65537.0
        out = out_hi - (out_hi - out)
    o_ptrs = OUT + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=(offs_m[:, None] < N_Q) & d_ok[None, :])


_KERNELS: dict[bool, SimpleNamespace] = {}


def triton_imported_for_interpreter() -> bool:
    """Whether triton was imported with ``TRITON_INTERPRET=1`` (its library functions are then interpreted)."""
    return type(tl.max).__name__ == "InterpretedFunction"


def get_kernels() -> SimpleNamespace:
    """The jitted kernels for the current mode (compiled, or interpreted under ``TRITON_INTERPRET=1``)."""
    interpret = triton_interpret_mode()
    if interpret != triton_imported_for_interpreter():
        raise KernelArgumentError(
            f"TRITON_INTERPRET is {'on' if interpret else 'off'} now but was "
            f"{'off' if interpret else 'on'} when triton was first imported; set it before anything imports triton "
            "(e.g. `TRITON_INTERPRET=1 python ...`) and do not change it afterwards"
        )
    if interpret not in _KERNELS:
        _KERNELS[interpret] = SimpleNamespace(
            interpret=interpret,
            quantize=triton.jit(_quantize_kernel),
            attention=triton.jit(_attention_kernel),
        )
    return _KERNELS[interpret]


def _block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def _launch_options(block_m: int, block_d: int, num_warps: int | None, num_stages: int | None) -> dict[str, int]:
    """Warps and pipeline stages: untuned defaults in the range of Triton's fused-attention tutorial."""
    return {
        "num_warps": num_warps or (8 if block_m * block_d >= 128 * 128 else 4),
        "num_stages": num_stages or (2 if block_d > 128 else 3),
    }


def quantize_per_block_triton(
    x: torch.Tensor, block: int, mean: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton version of :func:`autoaccel.kernels.reference.quantize_per_block` (same outputs)."""
    b, h, n, d = x.shape
    nb = num_blocks(n, block)
    x_int = torch.empty((b, h, n, d), dtype=torch.int8, device=x.device)
    scales = torch.empty((b, h, nb), dtype=torch.float32, device=x.device)
    mean_arg = mean.reshape(b * h, d).contiguous() if mean is not None else scales
    get_kernels().quantize[(nb, b * h)](
        x, mean_arg, x_int, scales, *x.stride(), h, n, d, nb,
        HAS_MEAN=mean is not None, BLOCK=block, BLOCK_D=_block_d(d), num_warps=8 if block * d >= 128 * 128 else 4,
    )  # fmt: skip
    return x_int, scales


def attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    block_m: int,
    block_n: int,
    qk_bits: int | None = None,
    pv_dtype: str | None = None,
    kv_indices: tuple[torch.Tensor, torch.Tensor] | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
) -> torch.Tensor:
    """Launch the fused attention kernel (arguments are validated by the public wrappers).

    Args:
        q, k, v: (B, H, N, D) tensors, any strides.
        scale: Softmax scale.
        block_m, block_n: Query / key tile sizes (also the INT8 scale blocks and the sparsity blocks).
        qk_bits: 8 for INT8 QK^T, ``None`` for QK^T in the input dtype.
        pv_dtype: ``"fp32" | "fp16" | "bf16" | "fp8"`` or ``None`` for ``v.dtype``.
        kv_indices: ``(indices, counts)`` from :func:`block_mask_to_indices` for block-sparse attention.
        num_warps, num_stages: Launch overrides (performance only, the numerics do not change).
    """
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    n_qb, n_kb = num_blocks(n_q, block_m), num_blocks(n_k, block_n)
    interpret = triton_interpret_mode()
    out = torch.empty_like(q)
    sq = sk = sv = None
    if qk_bits == 8:
        q, sq = quantize_per_block_triton(q, block_m)
        k, sk = quantize_per_block_triton(k, block_n, mean=smoothing_mean(k))
    if pv_dtype == "fp8":
        v, sv = quantize_v_fp8(v)
        sv = sv.contiguous()
        v = v.transpose(2, 3).contiguous().transpose(2, 3)  # tokens contiguous: the K-major operand FP8 dots want
    elif pv_dtype is not None:
        v = v.to({"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[pv_dtype])
    idx, cnt = kv_indices if kv_indices is not None else (None, None)
    dummy = out  # unused pointer arguments
    block_d = _block_d(d)
    get_kernels().attention[(n_qb, b * h)](
        q, k, v, out,
        sq if sq is not None else dummy, sk if sk is not None else dummy, sv if sv is not None else dummy,
        idx if idx is not None else dummy, cnt if cnt is not None else dummy,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        h, n_q, n_k, d, scale * LOG2E, n_qb, n_kb,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        QUANT_QK=qk_bits == 8, PV_FP8=pv_dtype == "fp8", SPARSE=kv_indices is not None,
        QK_IEEE=q.dtype == torch.float32, PV_IEEE=v.dtype == torch.float32,
        # The interpreter multiplies bfloat16 dot operands as raw uint16 bits: upcast them there (products are exact).
        UPCAST_QK=interpret and q.dtype == torch.bfloat16, UPCAST_PV=interpret and v.dtype == torch.bfloat16,
        EVEN_N=n_k % block_n == 0, EVEN_D=block_d == d,
        # The interpreter truncates fp32 -> bfloat16 and mis-rounds fp32 -> float8 (a mantissa carry can halve a
        # value); the GPU rounds to nearest even. There the kernel pre-rounds in fp32 so that those casts are exact.
        ROUND_P=(2 if pv_dtype == "fp8" else int(v.dtype == torch.bfloat16)) if interpret else 0,
        ROUND_OUT=interpret and out.dtype == torch.bfloat16,
        **_launch_options(block_m, block_d, num_warps, num_stages),
    )  # fmt: skip
    return out

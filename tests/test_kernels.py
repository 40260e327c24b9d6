"""Attention kernels: torch reference vs fp32 SDPA, Triton (CPU interpreter) vs reference, block masks, errors.

Error bounds are those documented in docs/kernels.md (measured maxima over 20 seeds, with margin).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from autoaccel.kernels import (
    KernelArgumentError,
    attention_reference,
    block_mask_to_indices,
    fp8_pv_supported,
    kept_fraction,
    quant_attention,
    quantize_per_block,
    smoothing_mean,
    sparse_attention,
    sparse_block_mask,
)

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def _interpreter_ready() -> bool:
    """Triton kernels run in this process's CPU interpreter: TRITON_INTERPRET=1 was set before triton was imported."""
    if not HAS_TRITON or os.environ.get("TRITON_INTERPRET") != "1":
        return False
    from autoaccel.kernels._triton_attention import triton_imported_for_interpreter

    return triton_imported_for_interpreter()


# Triton fixes interpreter mode at import, so the test_interp_* tests run in a child pytest started with
# TRITON_INTERPRET=1 (test_triton_interpreter_suite), unless this whole session was started that way.
INTERPRETER_READY = _interpreter_ready()
interp = pytest.mark.skipif(not INTERPRETER_READY, reason="runs in the TRITON_INTERPRET=1 child process")

N_TEXT, N_IMAGE = 16, 74  # 90 tokens: not a multiple of any block size used here (partial tail blocks)
N, D = N_TEXT + N_IMAGE, 32
BM, BN = 32, 16  # query / key blocks: 3 query blocks, 6 key blocks

# Relative Frobenius error vs fp32 SDPA on N(0, 1) inputs with K offset by +2 (docs/kernels.md, "Error bounds").
QUANT_BOUNDS = {"fp32": 1.5e-2, "fp16": 1.5e-2, "bf16": 1.5e-2, "fp8": 5e-2}
DENSE_BOUNDS = {torch.float32: 1e-6, torch.float16: 5e-4, torch.bfloat16: 4e-3}
TRITON_VS_REFERENCE = 3e-4  # interpreter vs reference (observed <= 8e-5: output rounding flips)


def _qkv(seed: int = 0, dtype: torch.dtype = torch.float16, n: int = N, d: int = D, h: int = 2):
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(3, 1, h, n, d, generator=g).unbind(0)
    return q.to(dtype), (k + 2.0).to(dtype), v.to(dtype)


def _sdpa32(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture
def interpret():
    """The Triton kernels, checked to really run in the CPU interpreter."""
    from autoaccel.kernels._triton_attention import get_kernels

    kernels = get_kernels()
    assert kernels.interpret
    assert type(kernels.attention).__name__ == "InterpretedFunction"
    assert type(kernels.quantize).__name__ == "InterpretedFunction"
    return kernels


# ----------------------------------------------------------------------------------------------- torch reference


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("pv_dtype", ["fp32", "fp16", "bf16", "fp8"])
def test_quant_reference_error_vs_sdpa(dtype: torch.dtype, pv_dtype: str) -> None:
    for seed in range(3):
        q, k, v = _qkv(seed, dtype)
        out = quant_attention(q, k, v, pv_dtype=pv_dtype, block_m=BM, block_n=BN, backend="torch")
        assert out.dtype == dtype and out.shape == q.shape
        err = _rel(out, _sdpa32(q, k, v))
        assert 1e-3 < err < QUANT_BOUNDS[pv_dtype], err  # above fp16 level: Q and K really are 8-bit


def test_quantize_per_block_values() -> None:
    x = torch.randn(1, 2, 40, 8, generator=torch.Generator().manual_seed(1)) * 3
    x[:, :, 32:] = 0.0  # an all-zero tail block
    x_int, scales = quantize_per_block(x, 16)
    assert x_int.dtype == torch.int8 and x_int.shape == x.shape and scales.shape == (1, 2, 3)
    amax = x[:, :, :32].reshape(1, 2, 2, 16 * 8).abs().amax(-1)
    torch.testing.assert_close(scales[:, :, :2], amax / 127, rtol=0, atol=0)
    assert torch.equal(scales[:, :, 2], torch.ones(1, 2)) and not x_int[:, :, 32:].any()
    assert int(x_int.abs().max()) == 127
    dequant = x_int.float() * scales.repeat_interleave(16, -1)[..., :40, None]
    assert bool(((dequant - x).abs() <= scales.repeat_interleave(16, -1)[..., :40, None] / 2 + 1e-6).all())


def test_k_smoothing_makes_channel_offsets_harmless() -> None:
    q, k, v = _qkv(0, torch.float32)
    offset = 100.0 * torch.randn(D, generator=torch.Generator().manual_seed(5))
    base = quant_attention(q, k, v, pv_dtype="fp32", block_m=BM, block_n=BN, backend="torch")
    shifted = quant_attention(q, k + offset, v, pv_dtype="fp32", block_m=BM, block_n=BN, backend="torch")
    # Softmax ignores q . offset; without smoothing the offset would eat the INT8 range of K (error ~ 1).
    assert _rel(shifted, base) < 1e-3
    assert torch.allclose(smoothing_mean(k + offset), smoothing_mean(k) + offset, atol=1e-4)


def test_auto_backend_on_cpu_is_the_reference() -> None:
    q, k, v = _qkv(2)
    ref = quant_attention(q, k, v, block_m=BM, block_n=BN, backend="torch")
    assert torch.equal(quant_attention(q, k, v, block_m=BM, block_n=BN), ref)
    ref = sparse_attention(q, k, v, keep_ratio=0.5, block_size=BN, q_block_size=BM, backend="torch")
    assert torch.equal(sparse_attention(q, k, v, keep_ratio=0.5, block_size=BN, q_block_size=BM), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sparse_keep_ratio_one_is_dense(dtype: torch.dtype) -> None:
    q, k, v = _qkv(3, dtype)
    mask = sparse_block_mask(q, k, keep_ratio=1.0, block_size=BN, q_block_size=BM)
    assert bool(mask.all()) and kept_fraction(mask) == 1.0
    out = sparse_attention(q, k, v, keep_ratio=1.0, block_size=BN, q_block_size=BM, backend="torch")
    assert torch.equal(out, attention_reference(q, k, v, scale=1 / math.sqrt(D), block_n=BN))
    assert _rel(out, _sdpa32(q, k, v)) < DENSE_BOUNDS[dtype]


# -------------------------------------------------------------------------------------------------- block masks


@pytest.mark.parametrize("selection", ["topk", "topp"])
def test_kept_blocks_grow_with_keep_ratio(selection: str) -> None:
    q, k, _ = _qkv(4, n=256)
    previous, fractions = None, []
    for ratio in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0):
        mask = sparse_block_mask(q, k, keep_ratio=ratio, block_size=16, q_block_size=16, selection=selection)
        if previous is not None:
            assert bool((previous <= mask).all())  # nested: a higher ratio only adds blocks
        previous = mask
        fractions.append(kept_fraction(mask))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] < 0.5


def test_topk_keeps_the_budget_per_row() -> None:
    q, k, _ = _qkv(5, n=256)
    n_kb = 16
    for ratio in (0.1, 0.3, 0.5):
        mask = sparse_block_mask(q, k, keep_ratio=ratio, block_size=16, q_block_size=16)
        assert bool((mask.sum(-1) == max(math.ceil(ratio * n_kb), 1)).all())  # only the diagonal is forced here


def test_diagonal_and_text_blocks_always_kept() -> None:
    q, k, _ = _qkv(6)
    mask = sparse_block_mask(q, k, keep_ratio=0.01, block_size=BN, q_block_size=BM, text_tokens=N_TEXT + 1)
    assert mask.shape == (1, 2, 3, 6)
    assert bool(mask[..., :2].all())  # tokens 0..16 lie in key blocks 0 and 1
    assert bool(mask[..., 0, :].all())  # the query block holding text attends densely
    for i in range(3):  # query block i (32 tokens) overlaps key blocks 2i and 2i+1
        assert bool(mask[..., i, 2 * i : 2 * i + 2].all())
    assert kept_fraction(mask) < 1.0
    sparse_rows = sparse_block_mask(
        q, k, keep_ratio=0.01, block_size=BN, q_block_size=BM, text_tokens=N_TEXT, dense_text_queries=False
    )
    assert not bool(sparse_rows[..., 0, :].all()) and bool(sparse_rows[..., 0].all())


def _clustered_qkv(h: int = 2, n: int = 96, d: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Key block j holds tokens of cluster j % 3: each query attends to its own block and the one 3 blocks away."""
    g = torch.Generator().manual_seed(7)
    centers = torch.linalg.qr(torch.randn(d, d, generator=g))[0][:3] * 8.0
    cluster = (torch.arange(n) // 16) % 3
    q = centers[cluster] + 0.3 * torch.randn(1, h, n, d, generator=g)
    k = centers[cluster] + 0.3 * torch.randn(1, h, n, d, generator=g)
    return q, k, torch.randn(1, h, n, d, generator=g)


def test_sparse_estimation_finds_the_important_blocks() -> None:
    q, k, v = _clustered_qkv()
    mask = sparse_block_mask(q, k, keep_ratio=0.34, block_size=16, q_block_size=16)
    assert bool((mask.sum(-1) == 3).all())
    for i in range(6):
        assert bool(mask[..., i, (i + 3) % 6].all()), f"query block {i} lost its partner block"
    out = sparse_attention(q, k, v, block_mask=mask, keep_ratio=0.34, block_size=16, q_block_size=16)
    assert _rel(out, _sdpa32(q, k, v)) < 1e-3
    drop_partner = mask.clone()
    drop_partner[..., torch.arange(6), (torch.arange(6) + 3) % 6] = False
    drop_partner[..., torch.arange(6), (torch.arange(6) + 1) % 6] = True
    bad = sparse_attention(q, k, v, block_mask=drop_partner, keep_ratio=0.34, block_size=16, q_block_size=16)
    assert _rel(bad, _sdpa32(q, k, v)) > 0.3


def test_topp_keeps_the_estimated_mass() -> None:
    q, k, v = _clustered_qkv()
    # All mass sits in 2 blocks per row (own + partner): top-p 0.9 keeps just those.
    mask = sparse_block_mask(q, k, keep_ratio=0.9, block_size=16, q_block_size=16, selection="topp")
    assert kept_fraction(mask) == pytest.approx(2 / 6)


def test_block_mask_to_indices() -> None:
    mask = torch.tensor([[[[True, False, True, False], [False, False, False, True]]]])
    idx, cnt = block_mask_to_indices(mask)
    assert cnt.tolist() == [[[2, 1]]] and idx.dtype == torch.int32
    assert idx[0, 0, 0, :2].tolist() == [0, 2] and idx[0, 0, 1, :1].tolist() == [3]


# ------------------------------------------------------------------------------------ Triton (CPU interpreter)


@interp
def test_interp_quantize_matches_reference(interpret) -> None:
    from autoaccel.kernels._triton_attention import quantize_per_block_triton

    x = torch.randn(1, 2, N, 24, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16) * 3
    mean = smoothing_mean(x)
    for block, m in ((16, mean), (32, None)):
        ref_int, ref_scale = quantize_per_block(x, block, m)
        tri_int, tri_scale = quantize_per_block_triton(x, block, m)
        assert torch.equal(tri_int, ref_int) and torch.equal(tri_scale, ref_scale)


@interp
@pytest.mark.parametrize(
    ("dtype", "pv_dtype"),
    [(torch.float16, "fp16"), (torch.float16, "fp8"), (torch.bfloat16, "bf16"), (torch.float32, "fp32")],
)
def test_interp_quant_attention_matches_reference(interpret, dtype: torch.dtype, pv_dtype: str) -> None:
    for n in (N, 96):  # partial tail block (masked loads) and whole blocks (unmasked loads)
        q, k, v = _qkv(9, dtype, n=n)
        kw = {"pv_dtype": pv_dtype, "block_m": BM, "block_n": BN}
        tri = quant_attention(q, k, v, backend="triton", **kw)
        ref = quant_attention(q, k, v, backend="torch", **kw)
        assert tri.dtype == dtype and _rel(tri, ref) < TRITON_VS_REFERENCE
        assert _rel(tri, _sdpa32(q, k, v)) < QUANT_BOUNDS[pv_dtype]


@interp
@pytest.mark.parametrize(("dtype", "d"), [(torch.float16, 32), (torch.bfloat16, 24), (torch.float32, 32)])
def test_interp_sparse_attention_matches_reference(interpret, dtype: torch.dtype, d: int) -> None:
    q, k, v = _qkv(10, dtype, d=d)
    kw = {"keep_ratio": 0.5, "block_size": BN, "q_block_size": BM, "text_tokens": N_TEXT}
    tri = sparse_attention(q, k, v, backend="triton", **kw)
    ref = sparse_attention(q, k, v, backend="torch", **kw)
    assert _rel(tri, ref) < TRITON_VS_REFERENCE


@interp
def test_interp_keep_ratio_one_equals_dense_kernel(interpret) -> None:
    from autoaccel.kernels._triton_attention import attention_triton

    for dtype, n in ((torch.float32, N), (torch.float16, 96)):
        q, k, v = _qkv(11, dtype, n=n)
        sparse = sparse_attention(q, k, v, keep_ratio=1.0, block_size=BN, q_block_size=BM, backend="triton")
        dense = attention_triton(q, k, v, scale=1 / math.sqrt(D), block_m=BM, block_n=BN)
        assert torch.equal(sparse, dense)
        assert _rel(dense, _sdpa32(q, k, v)) < DENSE_BOUNDS[dtype]


@interp
def test_interp_accepts_strided_inputs(interpret) -> None:
    g = torch.Generator().manual_seed(12)
    q, k, v = (t.transpose(1, 2) for t in torch.randn(3, 1, N, 2, D, generator=g).unbind(0))  # (B, N, H, D) views
    assert not q.is_contiguous()
    tri = quant_attention(q, k, v, block_m=BM, block_n=BN, pv_dtype="fp32", backend="triton")
    ref = quant_attention(q.contiguous(), k.contiguous(), v.contiguous(), block_m=BM, block_n=BN, pv_dtype="fp32")
    assert _rel(tri, ref) < TRITON_VS_REFERENCE


@interp
def test_interp_fp8_pv_supported_on_cpu() -> None:
    assert fp8_pv_supported("cpu")


@needs_triton
@pytest.mark.skipif(INTERPRETER_READY, reason="the interpreter tests already run in this process")
def test_triton_interpreter_suite() -> None:
    """Run the test_interp_* tests in a child pytest with TRITON_INTERPRET=1 set before triton is imported."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-k", "test_interp_", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 11 and "skipped" not in out, out[-3000:]


def test_fp8_pv_supported_off_cpu_without_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if "triton" in sys.modules and INTERPRETER_READY:
        pytest.skip("triton was imported in interpreter mode")
    assert not fp8_pv_supported("cpu")


# ------------------------------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"qk_bits": 3}, "qk_bits must be 8"),
        ({"qk_bits": 4}, "INT4"),
        ({"pv_dtype": "int8"}, "pv_dtype"),
        ({"block_m": 24}, "block_m must be a power of two"),
        ({"block_n": 8}, "block_n must be a power of two >= 16"),
        ({"scale": -1.0}, "scale"),
        ({"backend": "cuda"}, "backend"),
    ],
)
def test_quant_attention_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    q, k, v = _qkv()
    with pytest.raises(KernelArgumentError, match=match):
        quant_attention(q, k, v, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep_ratio": 0.0}, "keep_ratio"),
        ({"keep_ratio": 1.5}, "keep_ratio"),
        ({"keep_ratio": 0.5, "block_size": 48}, "block_size must be a power of two"),
        ({"keep_ratio": 0.5, "q_block_size": 100}, "q_block_size"),
        ({"keep_ratio": 0.5, "selection": "random"}, "selection"),
        ({"keep_ratio": 0.5, "text_tokens": N + 1}, "text_tokens"),
        ({"keep_ratio": 0.5, "block_mask": torch.ones(1, 2, 3, 5, dtype=torch.bool)}, "block_mask must be"),
        ({"keep_ratio": 0.5, "block_mask": torch.zeros(1, 2, 2, 2, dtype=torch.bool)}, "keeps no key block"),
    ],
)
def test_sparse_attention_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    q, k, v = _qkv()
    kwargs.setdefault("block_size", 64)
    kwargs.setdefault("q_block_size", 64)
    with pytest.raises(KernelArgumentError, match=match):
        sparse_attention(q, k, v, **kwargs)


def test_shape_and_dtype_mismatches_are_rejected() -> None:
    q, k, v = _qkv()
    with pytest.raises(KernelArgumentError, match="head_dim"):
        quant_attention(q, k[..., :16], v)
    with pytest.raises(KernelArgumentError, match="same number of tokens"):
        sparse_attention(q, k, v[:, :, :40], keep_ratio=0.5)
    with pytest.raises(KernelArgumentError, match="batch and heads"):
        quant_attention(q, k[:, :1], v[:, :1])
    with pytest.raises(KernelArgumentError, match="batch, heads, tokens, head_dim"):
        quant_attention(q[0], k[0], v[0])
    with pytest.raises(KernelArgumentError, match="share a dtype"):
        quant_attention(q, k.float(), v)
    with pytest.raises(KernelArgumentError, match="float16, bfloat16 or float32"):
        quant_attention(q.to(torch.int32), k, v)
    assert issubclass(KernelArgumentError, ValueError)


@needs_triton
def test_triton_backend_on_cpu_needs_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = _qkv()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(KernelArgumentError, match="needs the Triton interpreter: set TRITON_INTERPRET=1"):
        quant_attention(q, k, v, backend="triton")


@needs_triton
@pytest.mark.skipif(INTERPRETER_READY, reason="needs triton imported without the interpreter")
def test_interpreter_switched_on_after_triton_import_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import triton  # noqa: F401  (imported here in compiled mode, as on a GPU machine)

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    q, k, v = _qkv()
    with pytest.raises(KernelArgumentError, match="when triton was first imported"):
        quant_attention(q, k, v, block_m=BM, block_n=BN, backend="triton")

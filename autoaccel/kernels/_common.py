"""Argument validation and backend selection shared by the attention kernels."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from typing import Literal

import torch

from autoaccel.errors import AutoAccelError

Backend = Literal["auto", "triton", "torch"]
PVDtype = Literal["auto", "fp32", "fp16", "bf16", "fp8"]

LOG2E = 1.4426950408889634
FP8_MAX = 448.0  # largest finite float8 e4m3 (torch.float8_e4m3fn / tl.float8e4nv) value
INT8_MAX = 127.0
PV_TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8": torch.float8_e4m3fn,
}
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class KernelArgumentError(AutoAccelError, ValueError):
    """An attention kernel got an argument it cannot handle (shape, dtype, knob value or backend)."""


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (it is not imported here)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpret_mode() -> bool:
    """Whether Triton kernels run in the CPU interpreter: ``TRITON_INTERPRET=1`` (or triton's knob), read now."""
    triton = sys.modules.get("triton")
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:  # triton >= 3.3 reads the variable on every access unless the knob was set in code
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def fp8_pv_supported(device: torch.device | str) -> bool:
    """Whether ``pv_dtype="fp8"`` can run with the Triton backend on ``device``.

    FP8 tensor-core dots need compute capability 8.9 (Ada) or newer. The torch reference emulates FP8 on any device,
    and the Triton interpreter (``TRITON_INTERPRET=1``) runs it on the CPU.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 9)
    return triton_interpret_mode()


def resolve_backend(backend: str, device: torch.device) -> Literal["triton", "torch"]:
    """Pick the implementation: ``"auto"`` is Triton on CUDA when triton imports, the torch reference otherwise."""
    if backend not in ("auto", "triton", "torch"):
        raise KernelArgumentError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if not triton_available():
        raise KernelArgumentError("backend='triton' needs the triton package (pip install 'autoaccel[triton]')")
    if device.type != "cuda" and not triton_interpret_mode():
        raise KernelArgumentError(
            f"backend='triton' on {device.type} tensors needs the Triton interpreter: set TRITON_INTERPRET=1 in the "
            "environment before triton is first imported, or use backend='torch'"
        )
    return "triton"


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Check (B, H, N, D) layouts: same batch, heads, head dim, dtype and device; k and v of equal length."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise KernelArgumentError(f"{name} must be (batch, heads, tokens, head_dim), got shape {tuple(t.shape)}")
        if t.dtype not in _FLOAT_DTYPES:
            raise KernelArgumentError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")
    if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
        raise KernelArgumentError(
            f"q, k, v must share batch and heads: got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[2] != v.shape[2]:
        raise KernelArgumentError(f"k and v must have the same number of tokens: got {k.shape[2]} and {v.shape[2]}")
    if not (q.shape[3] == k.shape[3] == v.shape[3]):
        raise KernelArgumentError(
            f"q, k, v must share head_dim: got {q.shape[3]}, {k.shape[3]}, {v.shape[3]} (shapes {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)})"
        )
    if q.shape[2] == 0 or k.shape[2] == 0 or q.shape[3] == 0:
        raise KernelArgumentError(f"empty attention inputs: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise KernelArgumentError(f"q, k, v must share a dtype: got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise KernelArgumentError(f"q, k, v must be on one device: got {q.device}, {k.device}, {v.device}")


def check_block(name: str, value: int) -> int:
    """Block sizes are powers of two >= 16 (the smallest ``tl.dot`` tile)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 16 or value & (value - 1):
        raise KernelArgumentError(f"{name} must be a power of two >= 16, got {value!r}")
    return value


def softmax_scale(scale: float | None, head_dim: int) -> float:
    """The softmax scale, ``1/sqrt(head_dim)`` by default like SDPA."""
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
        raise KernelArgumentError(f"scale must be a positive finite number or None, got {scale!r}")
    return float(scale)


def num_blocks(n: int, block: int) -> int:
    """Number of blocks of ``block`` tokens covering ``n`` tokens (the last one may be partial)."""
    return -(-n // block)

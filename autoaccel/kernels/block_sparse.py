"""Block masks for block-sparse attention: which key blocks each query block attends to.

Importance is estimated from mean-pooled blocks (SpargeAttn, DraftAttention): with ``q_i`` the mean of query block i
and ``k_j`` the mean of key block j holding ``c_j`` tokens, the estimated share of block j in the attention of block i
is ``softmax_j(q_i . k_j * scale + log c_j)`` (the ``log c_j`` term weights a partial tail block by its size).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from autoaccel.kernels._common import KernelArgumentError, check_block, num_blocks, softmax_scale

Selection = Literal["topk", "topp"]


def _pool(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over blocks of ``block`` tokens (the tail block averages only its real tokens) and token counts."""
    b, h, n, d = x.shape
    nb = num_blocks(n, block)
    xf = torch.nn.functional.pad(x.float(), (0, 0, 0, nb * block - n)).view(b, h, nb, block, d)
    counts = torch.full((nb,), float(block), device=x.device)
    counts[-1] = n - (nb - 1) * block
    return xf.sum(dim=3) / counts[:, None], counts


def _forced_blocks(
    n_q: int, n_k: int, q_block: int, k_block: int, text_tokens: int, dense_text_queries: bool, device: torch.device
) -> torch.Tensor:
    """(n_qb, n_kb) bool: diagonal blocks (overlapping token ranges), text key blocks, and dense text query rows."""
    n_qb, n_kb = num_blocks(n_q, q_block), num_blocks(n_k, k_block)
    q_start = torch.arange(n_qb, device=device) * q_block
    q_end = (q_start + q_block).clamp(max=n_q)
    k_start = torch.arange(n_kb, device=device) * k_block
    k_end = (k_start + k_block).clamp(max=n_k)
    forced = (k_start[None, :] < q_end[:, None]) & (q_start[:, None] < k_end[None, :])  # token ranges overlap
    forced |= (k_start < text_tokens)[None, :]
    if dense_text_queries:
        forced |= (q_start < text_tokens)[:, None]
    return forced


def check_sparse_args(keep_ratio: float, selection: str, text_tokens: int, n_k: int) -> None:
    """Validate the knobs of :func:`sparse_block_mask` (block sizes are checked separately)."""
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0.0 < keep_ratio <= 1.0:
        raise KernelArgumentError(f"keep_ratio must be in (0, 1], got {keep_ratio!r}")
    if selection not in ("topk", "topp"):
        raise KernelArgumentError(f"selection must be 'topk' or 'topp', got {selection!r}")
    if isinstance(text_tokens, bool) or not isinstance(text_tokens, int) or not 0 <= text_tokens <= n_k:
        raise KernelArgumentError(f"text_tokens must be an int in [0, {n_k}] (the key length), got {text_tokens!r}")


def sparse_block_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    keep_ratio: float,
    block_size: int = 64,
    q_block_size: int = 128,
    selection: Selection = "topk",
    text_tokens: int = 0,
    dense_text_queries: bool = True,
    scale: float | None = None,
) -> torch.Tensor:
    """Which key blocks each query block keeps, from mean-pooled Q and K blocks.

    Forced blocks are always kept: key blocks whose tokens overlap the query block's ("diagonal"), key blocks holding
    any of the first ``text_tokens`` tokens, and (``dense_text_queries``) every key block for query blocks holding text
    tokens. The others are ranked by estimated attention mass (ties by block index) and kept:

    - ``selection="topk"``: the top blocks until ``ceil(keep_ratio * n_key_blocks)`` blocks are kept in the row,
      counting forced blocks first (a predictable cost: the kept fraction is about ``keep_ratio``);
    - ``selection="topp"``: the smallest set of top blocks whose estimated mass reaches ``keep_ratio`` (top-p),
      plus the forced blocks (adaptive cost).

    ``keep_ratio=1`` keeps every block; the kept set only grows with ``keep_ratio``.

    Args:
        q: (B, H, N_q, D) queries.
        k: (B, H, N_k, D) keys.
        keep_ratio: In (0, 1]: fraction of key blocks (topk) or of estimated attention mass (topp).
        block_size: Key tokens per block (power of two >= 16): the sparsity granularity.
        q_block_size: Query tokens per block (power of two >= 16): the kernel's query tile.
        selection: ``"topk"`` or ``"topp"``, see above.
        text_tokens: The first ``text_tokens`` tokens are text (FLUX joint attention puts 512 text tokens first).
        dense_text_queries: Text query blocks attend to every key block.
        scale: Softmax scale, ``1/sqrt(D)`` by default.

    Returns:
        Bool tensor (B, H, ceil(N_q / q_block_size), ceil(N_k / block_size)); ``mask.float().mean()`` is the kept
        fraction of key blocks, i.e. of the QK^T and PV FLOPs for equal block sizes.

    Example:
        >>> q = k = torch.randn(1, 2, 96, 32)
        >>> mask = sparse_block_mask(q, k, keep_ratio=0.5, block_size=16, q_block_size=32)
        >>> tuple(mask.shape)
        (1, 2, 3, 6)
    """
    check_block("block_size", block_size)
    check_block("q_block_size", q_block_size)
    if q.dim() != 4 or k.dim() != 4 or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise KernelArgumentError(
            f"q and k must be (B, H, N, D) with equal B, H, D: got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    check_sparse_args(keep_ratio, selection, text_tokens, k.shape[2])
    scale = softmax_scale(scale, q.shape[3])
    b, h, n_q, _ = q.shape
    n_k = k.shape[2]
    n_kb = num_blocks(n_k, block_size)
    forced = _forced_blocks(n_q, n_k, q_block_size, block_size, text_tokens, dense_text_queries, q.device)
    forced = forced.expand(b, h, -1, -1)
    if keep_ratio >= 1.0:
        return torch.ones_like(forced)
    pooled_q, _ = _pool(q, q_block_size)
    pooled_k, counts = _pool(k, block_size)
    est = torch.softmax(pooled_q @ pooled_k.transpose(-1, -2) * scale + counts.log(), dim=-1)
    if selection == "topk":
        budget = max(1, math.ceil(round(keep_ratio * n_kb, 6)))
        priority = est.masked_fill(forced, float("inf"))  # forced blocks rank first
        order = torch.sort(priority, dim=-1, descending=True, stable=True).indices
        n_forced = forced.sum(dim=-1, keepdim=True)
        keep_sorted = torch.arange(n_kb, device=q.device) < n_forced.clamp(min=budget)
    else:
        sorted_est, order = torch.sort(est, dim=-1, descending=True, stable=True)
        mass_before = sorted_est.cumsum(dim=-1) - sorted_est
        keep_sorted = mass_before < keep_ratio
    mask = torch.zeros_like(forced).scatter(-1, order, keep_sorted)
    return mask | forced


def block_mask_to_indices(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept key-block indices per query block, in increasing order, for the sparse kernel.

    Returns:
        ``(indices, counts)``: (B, H, n_qb, n_kb) int32 whose first ``counts[..., i]`` entries are the kept blocks of
        row i in increasing order (the rest is padding), and (B, H, n_qb) int32 counts. No host synchronisation.
    """
    dropped = (~mask).to(torch.int8)
    indices = torch.sort(dropped, dim=-1, stable=True).indices  # kept blocks first, each group in index order
    return indices.to(torch.int32).contiguous(), mask.sum(dim=-1, dtype=torch.int32).contiguous()


def kept_fraction(mask: torch.Tensor) -> float:
    """Fraction of (query block, key block) pairs kept: the QK^T/PV FLOP fraction for equal block sizes."""
    return float(mask.float().mean())

"""Time PyTorch SDPA against the Triton quantised and block-sparse attention kernels on a CUDA GPU.

Default shapes are FLUX-like joint attention: batch 1, 24 heads, head dim 128, 4096 image + 512 text tokens, bf16.
Each case is timed with CUDA events (median of ``--runs`` after ``--warmup``) and its relative error against fp32
SDPA on the same (random) inputs is reported. The markdown table is printed and appended to
``docs/benchmarks_attention.md``.

Usage:
    python benchmarks/bench_attention_gpu.py [--runs 50] [--keep-ratio 0.3] [--sweep] [--out PATH]

Targets (issue 8): quant_attention >= 1.5x faster than SDPA (flash); sparse_attention at keep ratio 0.3 >= 2x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks_attention.md"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def time_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    """Median milliseconds of ``fn`` over ``runs`` timed calls (CUDA events around each call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref).norm() / ref.norm())


def best_launch(fn: Callable[..., torch.Tensor], runs: int, warmup: int, sweep: bool) -> tuple[float, str]:
    """Time ``fn(num_warps=, num_stages=)`` with the defaults, or the best of a small sweep."""
    configs = [(None, None)]
    if sweep:
        configs += [(w, s) for w in (4, 8) for s in (2, 3, 4)]
    best = (float("inf"), "default")
    for warps, stages in configs:
        try:
            ms = time_ms(lambda w=warps, s=stages: fn(num_warps=w, num_stages=s), runs, warmup)
        except Exception as exc:  # a config can exceed shared memory; skip it
            print(f"  skipped num_warps={warps} num_stages={stages}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        best = min(best, (ms, "default" if warps is None else f"w{warps}/s{stages}"))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=24)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--image-tokens", type=int, default=4096)
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--keep-ratio", type=float, default=0.3)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sweep", action="store_true", help="also try num_warps x num_stages, report the best")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("bench_attention_gpu.py needs a CUDA GPU; none is available here. Nothing was measured.", file=sys.stderr)
        return 2
    try:
        import triton
    except ImportError:
        print("bench_attention_gpu.py needs triton (pip install 'autoaccel[triton]').", file=sys.stderr)
        return 2
    from autoaccel.kernels import fp8_pv_supported, kept_fraction, sparse_block_mask
    from autoaccel.kernels._triton_attention import attention_triton
    from autoaccel.kernels.block_sparse import block_mask_to_indices

    torch.manual_seed(0)
    dtype = DTYPES[args.dtype]
    b, h, d = args.batch, args.heads, args.head_dim
    n = args.image_tokens + args.text_tokens
    q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=dtype) for _ in range(3))
    scale = d**-0.5
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    flops = 4 * b * h * n * n * d
    pv_native = "bf16" if dtype == torch.bfloat16 else "fp16"

    rows: list[tuple[str, float, str, float, str]] = []  # name, ms, launch, rel err, note

    def sdpa(backend: SDPBackend | None) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            if backend is None:
                return F.scaled_dot_product_attention(q, k, v)
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v)

        return run

    flash = SDPBackend.FLASH_ATTENTION
    rows.append(("SDPA (flash)", time_ms(sdpa(flash), args.runs, args.warmup), "-", rel_err(sdpa(flash)(), ref), ""))
    rows.append(("SDPA (default)", time_ms(sdpa(None), args.runs, args.warmup), "-", rel_err(sdpa(None)(), ref), ""))

    def triton_case(name: str, note: str = "", **kw) -> None:
        def fn(num_warps=None, num_stages=None):
            return attention_triton(q, k, v, scale=scale, num_warps=num_warps, num_stages=num_stages, **kw)

        ms, launch = best_launch(fn, args.runs, args.warmup, args.sweep)
        rows.append((name, ms, launch, rel_err(fn(), ref), note))

    triton_case("triton dense (ours)", block_m=128, block_n=64)
    triton_case(f"quant int8 QK + {pv_native} PV", block_m=128, block_n=64, qk_bits=8, pv_dtype=pv_native)
    if fp8_pv_supported(q.device):
        triton_case("quant int8 QK + fp8 PV", block_m=128, block_n=64, qk_bits=8, pv_dtype="fp8")
    else:
        rows.append(("quant int8 QK + fp8 PV", float("nan"), "-", float("nan"), "needs sm89+"))

    for dense_text in (True, False):

        def make_mask(dense_text: bool = dense_text) -> torch.Tensor:
            return sparse_block_mask(
                q, k, keep_ratio=args.keep_ratio, block_size=64, q_block_size=128, text_tokens=args.text_tokens,
                dense_text_queries=dense_text, scale=scale,
            )  # fmt: skip

        mask = make_mask()
        indices = block_mask_to_indices(mask)
        frac = kept_fraction(mask)
        label = f"sparse keep {args.keep_ratio} topk, dense text rows={dense_text}"
        triton_case(f"{label} (kernel only)", f"kept {frac:.3f}", block_m=128, block_n=64, kv_indices=indices)

        def full(num_warps=None, num_stages=None, make_mask=make_mask):
            idx = block_mask_to_indices(make_mask())
            return attention_triton(
                q, k, v, scale=scale, block_m=128, block_n=64, kv_indices=idx, num_warps=num_warps,
                num_stages=num_stages,
            )  # fmt: skip

        rows.append((f"{label} (+ mask)", time_ms(full, args.runs, args.warmup), "default", rel_err(full(), ref), ""))

    base = rows[0][1]
    device = torch.cuda.get_device_name()
    cap = ".".join(map(str, torch.cuda.get_device_capability()))
    lines = [
        f"## {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC - {device} (sm{cap})",
        "",
        f"B={b} H={h} N={n} ({args.image_tokens} image + {args.text_tokens} text) D={d} {args.dtype}; torch "
        f"{torch.__version__}, triton {triton.__version__}; median of {args.runs} runs (CUDA events); random N(0,1) "
        "inputs (relative errors are pessimistic for real activations).",
        "",
        "| case | ms | TFLOP/s (dense-equivalent) | speedup vs SDPA flash | launch | rel. err vs fp32 | note |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for name, ms, launch, err, note in rows:
        lines.append(
            f"| {name} | {ms:.3f} | {flops / ms / 1e9:.0f} | {base / ms:.2f}x | {launch} | {err:.2e} | {note} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if not args.out.exists():
        args.out.write_text("# Attention kernel benchmarks\n\nWritten by `benchmarks/bench_attention_gpu.py`.\n\n")
    with args.out.open("a") as fh:
        fh.write(table + "\n")
    print(f"appended to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

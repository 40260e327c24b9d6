"""Profile a few acceleration methods on small pipelines; write a markdown table to docs/benchmarks.md.

Each method is profiled with `autoaccel.profiling.profile` against the unaccelerated pipeline in the same run
(baseline and candidate interleaved), single-threaded on the CPU unless a GPU is present. Pipelines: the tiny
random-weight FLUX pipeline of `autoaccel.testing` (with true CFG, so CFG truncation has work to drop), and the
reference Fashion-MNIST FLUX model (also with true CFG) when `autoaccel.reference.load_reference_pipeline()` loads.

The table goes between ``<!-- bench_methods:start -->`` and ``<!-- bench_methods:end -->`` in docs/benchmarks.md
(created, or the section appended, when missing); everything else in the file is left alone.

Usage:
    python benchmarks/bench_methods.py                     # write docs/benchmarks.md
    python benchmarks/bench_methods.py --repeats 3 --print  # print only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _docs import write_section  # noqa: E402  (benchmarks run as scripts from this folder)

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Methods on tiny pipelines"


def cases(steps: int) -> list[tuple[str, dict[str, Any]]]:
    """(method, params) pairs profiled on every pipeline."""
    return [
        ("block_cache", {"threshold": 0.3}),
        ("block_cache", {"threshold": 0.5}),
        ("taylorseer", {"interval": 3, "order": 1, "warmup_steps": 3}),
        ("steps", {"num_inference_steps": steps // 2}),
        ("steps", {"num_inference_steps": steps // 2, "solver": "unipc"}),
        ("cfg_truncation", {"after_fraction": 0.5}),
        ("quantize", {"scheme": "int8_weight_only"}),
        ("compile", {}),
    ]


def pipelines(steps: int, with_reference: bool) -> list[tuple[str, Any, Any]]:
    """(label, pipeline, workload) triples."""
    from autoaccel.testing import TINY_NEGATIVE_PROMPT, tiny_pipeline
    from autoaccel.workload import Workload

    out = []
    tiny = tiny_pipeline("flux")
    tiny_workload = Workload.for_pipeline(
        tiny,
        num_inference_steps=steps,
        height=32,
        width=32,
        guidance_scale=3.5,
        call_kwargs={"max_sequence_length": 32, "negative_prompt": TINY_NEGATIVE_PROMPT, "true_cfg_scale": 2.0},
    )
    out.append(("tiny FLUX (random weights, true CFG)", tiny, tiny_workload))
    if with_reference:
        try:
            from autoaccel.reference import load_reference_pipeline

            ref = load_reference_pipeline()
        except Exception as e:  # not trained yet, or not importable
            print(f"reference model skipped: {type(e).__name__}: {e}", file=sys.stderr)
        else:
            # trained with 10% empty prompts, so true CFG against the empty prompt works (as in its evaluation)
            cfg = {"negative_prompt": "", "true_cfg_scale": 2.0}
            workload = Workload.for_pipeline(ref, num_inference_steps=steps, call_kwargs=cfg)
            out.append(("reference Fashion-MNIST FLUX (true CFG)", ref, workload))
    return out


def _fmt(x: float | None, spec: str = ".3f") -> str:
    if x is None:
        return "n/a"
    return format(x, spec) if abs(x) != float("inf") else ("inf" if x > 0 else "-inf")


def profile_all(args: argparse.Namespace) -> str:
    from autoaccel.errors import NotApplicableError, RecipeError
    from autoaccel.profiling import profile

    sections = []
    for label, pipe, workload in pipelines(args.steps, args.reference):
        rows = [
            "| method | params | speedup (median) | 95% CI | FLOPs ratio | LPIPS mean | PSNR mean (dB) |",
            "|---|---|---|---|---|---|---|",
        ]
        last = None
        for name, params in cases(args.steps):
            recipe = {"schema_version": 1, "methods": [{"name": name, "params": params}]}
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            try:
                m = profile(
                    pipe, recipe, workload, repeats=args.repeats, warmup=1, threads=1, progress=sys.stderr.isatty()
                )
            except (NotApplicableError, RecipeError) as e:
                rows.append(f"| {name} | {shown} | not applicable: {e} | | | | |")
                continue
            last = m
            low, high = m.speedup_ci
            rows.append(
                f"| {name} | {shown} | {m.speedup:.2f}x | [{low:.2f}, {high:.2f}] | {_fmt(m.flops_ratio)} "
                f"| {_fmt(m.quality['lpips'].mean, '.3g')} | {_fmt(m.quality['psnr'].mean, '.1f')} |"
            )
            print(f"{label}: {name} {shown}: {m.summary()}", file=sys.stderr)
        head = f"### {label}\n\n"
        if last is not None:
            w, hw = workload, last.hardware
            head += (
                f"{len(w)} images ({w.name or 'custom'} prompts x {len(w.seeds)} seed), {w.num_inference_steps} "
                f"steps, {f'{w.height}x{w.width} px' if w.height else 'native size'}, batch {w.batch_size}; {hw.name} "
                f"({hw.device_kind}), {last.threads} thread(s), torch {hw.torch_version}, diffusers "
                f"{hw.diffusers_version}; load average {os.getloadavg()[0]:.1f} on {hw.cpu_count} CPUs at the end. "
                "Baseline time per workload: "
                f"{last.baseline_latency.median:.3f} s (median of {last.baseline_latency.n}).\n\n"
            )
        sections.append(head + "\n".join(rows))
    stamp = time.strftime("%Y-%m-%d")
    command = f"python benchmarks/bench_methods.py --repeats {args.repeats} --steps {args.steps}"
    return f"Generated {stamp} by `{command}`.\n\n" + "\n\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed generations of the workload per variant")
    parser.add_argument("--steps", type=int, default=16, help="denoising steps of the workload")
    parser.add_argument("--no-reference", dest="reference", action="store_false", help="skip the reference model")
    parser.add_argument("--print", action="store_true", help="print the table instead of writing docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # per-call tokenizer truncation notices
    diffusers_logging.disable_progress_bar()
    shared_lpips = REPO.parent / "shared" / "weights" / "lpips_alex_v0.1.safetensors"  # the developers' checkout
    if shared_lpips.is_file():
        os.environ.setdefault("AUTOACCEL_LPIPS_WEIGHTS", str(shared_lpips))
    table = profile_all(args)
    if args.print:
        print(table)
    else:
        write_section("bench_methods", SECTION, table)
        print(f"wrote {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""`autoaccel demo`: the main job. Accelerates the bundled reference model with its shipped recipe and prints the
measured speedup and quality change against the unaccelerated pipeline, both run here, now."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import app
from ._common import console, friendly_errors, setup_logging


@app.command("demo")
def demo_command(
    model: Annotated[str, typer.Option(help="Model to accelerate.")] = "autoaccel/fashion-flux",
    recipe: Annotated[
        Path | None, typer.Option(help="Recipe file (default: the shipped recipe for the model).")
    ] = None,
    prompts: Annotated[int, typer.Option(min=1, help="Prompts of the model's default set to generate.")] = 6,
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per variant (medians are compared).")] = 3,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: 1, for stable timing).")] = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Accelerate the bundled model with its shipped recipe; print speedup and quality difference."""
    setup_logging(verbose)
    with friendly_errors():
        from ..aliases import resolve
        from ..auto import _load
        from ..errors import AutoAccelError
        from ..profiling import profile
        from ..recipes import Recipe
        from ..recipes.shipped import shipped_recipes
        from ..workload import Workload

        model_id, source = resolve(model)
        chosen = Recipe.load(recipe) if recipe is not None else None  # a bad file fails before the model loads
        if chosen is None and not shipped_recipes(model_id):
            raise AutoAccelError(f"no shipped recipe for {model_id}; pass --recipe FILE")
        pipe = _load(model_id, source, {})
        if chosen is None:
            usable = shipped_recipes(model_id, pipe)
            if not usable:
                raise AutoAccelError(f"no shipped recipe for {model_id} applies here (--verbose shows why)")
            chosen = usable[0]
        pipe.set_progress_bar_config(disable=True)
        workload = Workload.for_pipeline(pipe)
        workload = workload.subset(prompts)
        console.print(
            f"[bold]{model_id}[/bold]: {len(workload)} images, recipe "
            + ", ".join(f"{m.name}{m.params}" for m in chosen.methods)
        )
        metrics = _available_metrics()
        m = profile(pipe, chosen, workload, metrics=metrics, repeats=repeats, threads=threads, model_id=model_id)
        table = Table(title=f"{model_id} accelerated vs unaccelerated ({m.hardware.name}, {m.threads} thread(s))")
        table.add_column("quantity")
        table.add_column("value")
        low, high = m.speedup_ci
        table.add_row("speedup (median wall clock)", f"{m.speedup:.2f}x  [95% CI {low:.2f}, {high:.2f}]")
        table.add_row("latency per workload", f"{m.baseline_latency.median:.3f}s -> {m.candidate_latency.median:.3f}s")
        if m.flops_ratio is not None:
            table.add_row("denoiser FLOPs", f"{m.flops_ratio:.3f} of baseline")
        for name, s in m.quality.items():
            table.add_row(name, f"{s.mean:.4g}  [95% CI {s.ci_low:.4g}, {s.ci_high:.4g}]")
        console.print(table)
        if "lpips" not in metrics:
            console.print(
                "LPIPS was skipped: its weights are not available offline. Set AUTOACCEL_LPIPS_WEIGHTS to a "
                "lpips_alex_v0.1.safetensors file or allow the one-time download (docs/metrics.md)."
            )


def _available_metrics() -> tuple[str, ...]:
    """LPIPS when its weights can be had (locally or by download), always PSNR and SSIM."""
    import torch

    from ..errors import AutoAccelError
    from ..metrics import lpips

    probe = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    try:
        lpips(probe, probe)
    except AutoAccelError:
        return ("psnr", "ssim")
    return ("lpips", "psnr", "ssim")

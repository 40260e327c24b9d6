"""Timing, peak memory, thread count and progress display of the profiler."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from autoaccel.recipes import Recipe
from autoaccel.workload import Workload

__all__ = ["peak_memory", "progress_bar", "threads", "time_variants", "timed"]


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (CUDA, MPS); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds ``fn`` takes: CUDA events on a GPU, ``time.perf_counter`` otherwise; the device is synchronised."""
    synchronize(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Yields a dict that holds ``peak`` (bytes) and ``kind`` (a `MemoryKind`) after the block."""
    out: dict[str, Any] = {"peak": None, "kind": "unavailable"}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        synchronize(device)
        out.update(peak=int(torch.cuda.max_memory_allocated(device)), kind="cuda_max_allocated")
        return
    reset = False
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak resident set
        reset = True
    yield out
    if reset:
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = Path("/proc/self/status").read_text()
            kb = int(status.split("VmHWM:")[1].split()[0])
            out.update(peak=kb * 1024, kind="cpu_peak_rss")
            return
    with contextlib.suppress(ImportError):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
        out.update(peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, kind="cpu_peak_rss_lifetime")


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Set torch's CPU thread count to ``n`` (``None``: unchanged) for the block; yields the count in use."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int) -> Iterator[Callable[[str, int], None]]:
    """Yields ``advance(description, n)``; a rich progress bar over pipeline items when enabled and on a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )
    with bar:
        task = bar.add_task("profiling", total=total)

        def advance(description: str, n: int) -> None:
            bar.update(task, advance=n, description=description)

        yield advance


def time_variants(
    pipe: Any,
    recipe: Recipe,
    workload: Workload,
    device: torch.device,
    *,
    repeats: int,
    warmup: int,
    interleave: bool,
    advance: Callable[[str, int], None],
) -> tuple[dict[str, list[float]], dict[str, dict[str, Any]]]:
    """Time whole-workload generations of the baseline and of ``recipe``; ``warmup`` untimed runs of each first.

    Interleaved in ABBA order (the recipe applied and removed around each candidate run) unless ``interleave`` is
    false (recipe applied once: all candidate runs, then all baseline runs). The recipe is always removed.

    Returns:
        ``(samples, memory)``: seconds per run under ``"baseline"`` / ``"candidate"``, and each variant's peak memory
        during its first run as ``{"peak": bytes | None, "kind": MemoryKind}``.
    """
    samples: dict[str, list[float]] = {"baseline": [], "candidate": []}
    memory: dict[str, dict[str, Any]] = {}
    n = len(workload)

    def run_all() -> None:
        for batch in workload.batches():
            pipe(**workload.pipeline_kwargs(batch, device=device))

    def once(variant: str, record: bool) -> None:
        with peak_memory(device) if variant not in memory else contextlib.nullcontext() as mem:
            if record:
                samples[variant].append(timed(run_all, device))
            else:
                run_all()
        if mem is not None:
            memory[variant] = mem
        advance(f"timing {variant}", n)

    if interleave:  # ABBA order: slow drift and order effects hit both variants equally
        schedule = [(v, False) for _ in range(warmup) for v in ("baseline", "candidate")]
        for r in range(repeats):
            schedule += [(v, True) for v in (("baseline", "candidate") if r % 2 == 0 else ("candidate", "baseline"))]
        for variant, record in schedule:
            handle = recipe.apply(pipe) if variant == "candidate" else None
            try:
                once(variant, record)
            finally:
                if handle is not None:
                    handle.remove()
        return samples, memory
    handle = recipe.apply(pipe)  # applied once: all candidate runs, then all baseline runs
    try:
        for i in range(warmup + repeats):
            once("candidate", i >= warmup)
    finally:
        handle.remove()
    for i in range(warmup + repeats):
        once("baseline", i >= warmup)
    return samples, memory

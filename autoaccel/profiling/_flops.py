"""FLOPs spent inside the denoiser, counted with ``torch.utils.flop_counter``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from autoaccel.methods._pipeline import denoiser
from autoaccel.profiling._outputs import generate
from autoaccel.workload import Workload, WorkloadItem

__all__ = ["EXTRA_FLOP_FORMULAS", "DenoiserFlops", "count_denoiser_flops", "generate_counted"]


def _cpu_flash_attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# Ops torch's counter has no formula for. CPU attention runs as its own op, which torch 2.x does not count.
EXTRA_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash_attention_flops


class DenoiserFlops:
    """Counts FLOPs (``torch.utils.flop_counter``) spent inside the pipeline's denoiser while the context is open.

    One ``FlopCounterMode`` spans the context; forward hooks on the denoiser add up the counter's growth during each
    top-level denoiser call, so text encoders, the VAE and scheduler arithmetic are excluded, and work that a method
    skips inside the denoiser (cached blocks, a dropped CFG branch, fewer steps) is not counted. ``total`` is the sum,
    ``calls`` the number of denoiser calls. Compiled modules run eagerly while counting (``torch.compiler`` stance
    ``force_eager``): compiled kernels would hide their operators from the counter, and compiling under the counting
    mode would spoil Dynamo's cache for the timed runs that follow.

    Example:
        >>> with DenoiserFlops(pipe) as flops:
        ...     pipe("a cat", num_inference_steps=4)
        >>> flops.total, flops.calls
    """

    def __init__(self, pipe: Any) -> None:
        self.module = denoiser(pipe)
        self.total = 0
        self.calls = 0
        self._depth = 0
        self._start = 0
        self._counter: FlopCounterMode | None = None
        self._hooks: list[Any] = []
        self._stance: Any = None

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        if self._depth == 0 and self._counter is not None:
            self._start = self._counter.get_total_flops()
        self._depth += 1

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._counter is not None:
            self.total += self._counter.get_total_flops() - self._start
            self.calls += 1

    def __enter__(self) -> DenoiserFlops:
        self._stance = torch.compiler.set_stance("force_eager")
        self._stance.__enter__()
        self._counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
        self._counter.__enter__()
        self._hooks = [
            self.module.register_forward_pre_hook(self._pre),
            self.module.register_forward_hook(self._post, always_call=True),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        counter, self._counter = self._counter, None
        if counter is not None:
            counter.__exit__(*exc)
        stance, self._stance = self._stance, None
        if stance is not None:
            stance.__exit__(*exc)


def generate_counted(
    pipe: Any, workload: Workload, items: Sequence[WorkloadItem], *, device: Any = None, on_batch: Any = None
) -> tuple[torch.Tensor, DenoiserFlops]:
    """`generate` ``items`` and count the denoiser FLOPs of that generation.

    The outputs are always those of the pipeline as it runs when timed: where modules are compiled, the counter ran
    them eagerly, so the items are generated once more outside it (float rounding differs from eager).
    """
    with DenoiserFlops(pipe) as flops:
        outputs = generate(pipe, workload, items, device=device, on_batch=on_batch)
    if _has_compiled_modules(pipe):
        outputs = generate(pipe, workload, items, device=device)
    return outputs, flops


def _has_compiled_modules(pipe: Any) -> bool:
    """Whether any module of the pipeline is compiled (``nn.Module.compile()`` or the `compile` method)."""
    components = getattr(pipe, "components", None) or {}
    return any(
        getattr(m, "_compiled_call_impl", None) is not None
        for c in components.values()
        if isinstance(c, torch.nn.Module)
        for m in c.modules()
    )


def count_denoiser_flops(pipe: Any, workload: Workload, item: WorkloadItem | None = None) -> int:
    """Denoiser FLOPs of one full generation of ``item`` (default: the workload's first) in the current state."""
    with DenoiserFlops(pipe) as flops:
        generate(pipe, workload, [item if item is not None else workload.items()[0]])
    return flops.total

"""Shared plumbing of the attention-kernel methods: route a DiT's self-attention through one of our kernels.

Integration: a diffusers ``ModelHook`` on every targeted attention module runs that module's forward inside a
`torch.overrides.TorchFunctionMode` that intercepts `torch.nn.functional.scaled_dot_product_attention`. This covers
every family with one mechanism: SD3's ``JointAttnProcessor2_0`` and PixArt/DiT's ``AttnProcessor2_0`` call SDPA
directly with (B, H, N, D) tensors, and FLUX's ``FluxAttnProcessor`` goes through diffusers' attention dispatcher,
whose native backends permute to (B, H, N, D) and call the same SDPA. Nothing global is patched: the mode stack is
thread-local, so another thread (or another pipeline) calling SDPA at the same time is not affected, and the mode is
popped on exit from the forward even when it raises. The interception only sees ops of the targeted modules; its
cost is one Python call per torch op inside them (a few microseconds each).

SDPA calls with an ``attn_mask``, ``dropout_p > 0``, ``is_causal``, ``enable_gqa``, a layout other than 4-D, a
dtype other than fp16/bf16/fp32, or query and key lengths that differ (cross-attention, e.g. the extra attention of
FLUX's IP-Adapter processor) fall through to the original SDPA (counted in ``fallback_calls``): the kernels are
non-causal and unmasked, and the text handling assumes self-attention.

Targets per family (self-attention only; cross-attention stays dense):

- ``flux``: ``attn`` of the double- and single-stream blocks; joint attention with the text tokens first (their count
  is the length of the block's ``encoder_hidden_states``).
- ``sd3``: ``attn`` (joint attention, image tokens first and text tokens last) and ``attn2`` where present (SD3.5's
  image-only self-attention).
- ``pixart``, ``dit``: ``attn1`` (PixArt's ``attn2`` is cross-attention and is left alone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers.hooks import HookRegistry, ModelHook
from torch.overrides import TorchFunctionMode

from ..errors import NotApplicableError
from ..kernels import triton_available, triton_interpret_mode
from ._base import Handle
from ._hooks import invalidate
from ._pipeline import Block, denoiser, require_family, transformer_blocks
from ._tracker import StepTracker, acquire_tracker

FAMILIES = ("flux", "sd3", "pixart", "dit")
TextPosition = Literal["first", "last", "none"]

# The C function behind torch.nn.functional.scaled_dot_product_attention (the object TorchFunctionMode receives,
# whatever the Python attribute has been rebound to).
_SDPA = torch._C._nn.scaled_dot_product_attention
_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# family -> (attention attribute of each block, where its text tokens are); model knowledge kept as data.
_SITES: dict[str, tuple[tuple[str, TextPosition], ...]] = {
    "flux": (("attn", "first"),),
    "sd3": (("attn", "last"), ("attn2", "none")),
    "pixart": (("attn1", "none"),),
    "dit": (("attn1", "none"),),
}
# Processors (not on diffusers' dispatcher) known to call torch.nn.functional.scaled_dot_product_attention.
_SDPA_PROCESSORS = frozenset(
    {"AttnProcessor2_0", "FusedAttnProcessor2_0", "JointAttnProcessor2_0", "FusedJointAttnProcessor2_0"}
)
_NATIVE_BACKENDS = frozenset({"native", "_native_math", "_native_efficient", "_native_flash", "_native_cudnn"})


@dataclass(frozen=True)
class AttentionSite:
    """A targeted attention module: its block, qualified name and where the text tokens sit in its sequence."""

    name: str
    module: torch.nn.Module
    block: Block
    text: TextPosition


class AttentionKernel:
    """What a method plugs in: attention on (B, H, N, D) tensors with the text tokens (if any) first.

    ``text_aware`` kernels get the sequence reordered so the text comes first (SD3 puts it last); others get it as is.
    """

    text_aware = False

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None, text_tokens: int
    ) -> torch.Tensor:
        raise NotImplementedError

    def flush(self) -> None:
        """Move counters accumulated on the device into ``stats`` (called once per denoiser step and on removal)."""


def _processor_problem(module: torch.nn.Module) -> str | None:
    """Why SDPA calls of this attention module cannot be intercepted, or None."""
    proc = getattr(module, "processor", None)
    if proc is None:
        return "has no attention processor"
    if hasattr(proc, "_attention_backend"):  # diffusers' attention dispatcher
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        if getattr(proc, "_parallel_config", None) is not None:
            return "runs context-parallel attention"
        backend = proc._attention_backend or _AttentionBackendRegistry.get_active_backend()[0]
        name = getattr(backend, "value", backend)
        if name not in _NATIVE_BACKENDS:
            return f"uses the dispatcher backend {name!r}, which does not call torch SDPA (use a native backend)"
        return None
    if type(proc).__name__ not in _SDPA_PROCESSORS:
        return f"uses {type(proc).__name__}, which is not known to call torch scaled_dot_product_attention"
    return None


def attention_sites(pipe: Any, method: str, *, skip_first_blocks: int, skip_last_blocks: int) -> list[AttentionSite]:
    """The attention modules a method targets, in execution order; `NotApplicableError` says why there are none.

    Args:
        pipe: A pipeline of the flux, sd3, pixart or dit family.
        method: Method name for error messages.
        skip_first_blocks: Transformer blocks at the start kept exact.
        skip_last_blocks: Transformer blocks at the end kept exact.
    """
    fam = require_family(pipe, method, FAMILIES)
    blocks = transformer_blocks(denoiser(pipe))
    if skip_first_blocks + skip_last_blocks >= len(blocks):
        raise NotApplicableError(
            f"{method}: skip_first_blocks ({skip_first_blocks}) + skip_last_blocks ({skip_last_blocks}) must leave at "
            f"least one of the denoiser's {len(blocks)} transformer blocks"
        )
    sites = []
    for block in blocks[skip_first_blocks : len(blocks) - skip_last_blocks]:
        for attr, text in _SITES[fam]:
            module = getattr(block.module, attr, None)
            if module is None:
                continue
            problem = _processor_problem(module)
            if problem is not None:
                raise NotApplicableError(f"{method}: {block.name}.{attr} {problem}")
            sites.append(AttentionSite(f"{block.name}.{attr}", module, block, text))
    if not sites:
        raise NotApplicableError(f"{method}: no self-attention module found in the targeted blocks of {fam}")
    return sites


def _bind(args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}
    bound.update(zip(_SDPA_ARGS, args, strict=False))
    bound.update(kwargs)
    return bound


def _supported(bound: dict[str, Any]) -> bool:
    q, k, v = bound.get("query"), bound.get("key"), bound.get("value")
    if bound["attn_mask"] is not None or bound["dropout_p"] != 0.0 or bound["is_causal"] or bound["enable_gqa"]:
        return False
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 and t.dtype in _FLOAT_DTYPES for t in (q, k, v)):
        return False
    same_tokens = q.shape[2] == k.shape[2] == v.shape[2]  # self-attention (an IP-Adapter's extra attention is not)
    return q.shape[:2] == k.shape[:2] == v.shape[:2] and same_tokens and q.dtype == k.dtype == v.dtype


def _text_first(x: torch.Tensor, text_tokens: int) -> torch.Tensor:
    """Move the last ``text_tokens`` tokens (dim 2) to the front."""
    n = x.shape[2]
    return torch.cat([x[:, :, n - text_tokens :], x[:, :, : n - text_tokens]], dim=2)


def _text_last(x: torch.Tensor, text_tokens: int) -> torch.Tensor:
    """Inverse of `_text_first`."""
    return torch.cat([x[:, :, text_tokens:], x[:, :, :text_tokens]], dim=2)


class _Shared:
    """State of one application: the kernel, the step tracker, the warm-up and the counters."""

    def __init__(
        self, kernel: AttentionKernel, tracker: StepTracker, dense_first_steps: int, stats: dict[str, int]
    ) -> None:
        self.kernel, self.tracker, self.dense_first_steps, self.stats = kernel, tracker, dense_first_steps, stats

    def attend(self, bound: dict[str, Any], text: TextPosition, text_tokens: int) -> torch.Tensor | None:
        """The kernel's output for one SDPA call, or None to run the original SDPA."""
        if not _supported(bound):
            self.stats["dense_calls"] += 1
            self.stats["fallback_calls"] += 1
            return None
        if self.tracker.step < self.dense_first_steps:
            self.stats["dense_calls"] += 1
            return None
        q, k, v = bound["query"], bound["key"], bound["value"]
        n = q.shape[2]
        if text == "none" or not 0 < text_tokens <= min(n, k.shape[2]):
            text_tokens = 0
        self.stats["kernel_calls"] += 1
        if text == "last" and text_tokens and self.kernel.text_aware:
            q, k, v = (_text_first(t, text_tokens) for t in (q, k, v))
            out = self.kernel(q, k, v, scale=bound["scale"], text_tokens=text_tokens)
            return _text_last(out, text_tokens)
        return self.kernel(q, k, v, scale=bound["scale"], text_tokens=text_tokens)


class _SDPAMode(TorchFunctionMode):
    """Sends SDPA calls to ``shared.attend``; every other torch call runs unchanged."""

    def __init__(self, shared: _Shared, text: TextPosition, text_tokens: int) -> None:
        super().__init__()
        self.shared, self.text, self.text_tokens = shared, text, text_tokens

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is _SDPA:
            out = self.shared.attend(_bind(args, kwargs), self.text, self.text_tokens)
            if out is not None:
                return out
        return func(*args, **kwargs)


class _BlockContext:
    """The text length of the block being run, recorded by `_BlockHook` for the attention hooks inside it."""

    def __init__(self) -> None:
        self.text_tokens = 0


class _BlockHook(ModelHook):
    def __init__(self, block: Block, context: _BlockContext) -> None:
        super().__init__()
        self.meta, self.context = block.meta, context

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        meta = self.meta
        text = meta._get_parameter_from_args_kwargs(meta.encoder_hidden_states_argument_name, args, kwargs)
        self.context.text_tokens = text.shape[1] if isinstance(text, torch.Tensor) and text.dim() >= 2 else 0
        try:
            return self.fn_ref.original_forward(*args, **kwargs)
        finally:
            self.context.text_tokens = 0


class _AttentionHook(ModelHook):
    def __init__(self, site: AttentionSite, shared: _Shared, context: _BlockContext | None, last: bool) -> None:
        super().__init__()
        self.site, self.shared, self.context, self.last = site, shared, context, last

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        text_tokens = self.context.text_tokens if self.context is not None else 0
        with _SDPAMode(self.shared, self.site.text, text_tokens):
            out = self.fn_ref.original_forward(*args, **kwargs)
        if self.last:
            self.shared.kernel.flush()
        return out


def install(
    pipe: Any,
    name: str,
    sites: list[AttentionSite],
    kernel: AttentionKernel,
    *,
    dense_first_steps: int,
    stats: dict[str, int],
) -> Handle:
    """Hook ``kernel`` into the SDPA calls of ``sites``; all-or-nothing. Returns the removable handle.

    ``stats`` gets ``kernel_calls`` (SDPA calls run by the kernel), ``dense_calls`` (SDPA calls of the targeted
    modules run by the original SDPA: warm-up steps and fallbacks) and ``fallback_calls`` (those with arguments the
    kernels do not support), next to whatever counters the kernel keeps.
    """
    stats.update({"kernel_calls": 0, "dense_calls": 0, "fallback_calls": 0})
    model = denoiser(pipe)
    hook_name = f"autoaccel.{name}"
    tracker = acquire_tracker(pipe)
    shared = _Shared(kernel, tracker, dense_first_steps, stats)
    registries: list[HookRegistry] = []

    def remove_hooks() -> None:
        for registry in registries:
            registry.remove_hook(hook_name, recurse=False)
        invalidate(model)

    try:
        contexts: dict[str, _BlockContext] = {}
        for site in sites:
            if site.text != "none" and site.block.name not in contexts:
                contexts[site.block.name] = _BlockContext()
                registry = HookRegistry.check_if_exists_or_initialize(site.block.module)
                registry.register_hook(_BlockHook(site.block, contexts[site.block.name]), hook_name)
                registries.append(registry)
        for i, site in enumerate(sites):
            hook = _AttentionHook(site, shared, contexts.get(site.block.name), last=i == len(sites) - 1)
            registry = HookRegistry.check_if_exists_or_initialize(site.module)
            registry.register_hook(hook, hook_name)
            registries.append(registry)
    except Exception:
        remove_hooks()
        tracker.release()
        raise
    invalidate(model)

    def undo() -> None:
        remove_hooks()
        kernel.flush()
        tracker.release()

    return Handle(name, undo, stats)


def check_backend(method: str, backend: str, device: torch.device) -> None:
    """`NotApplicableError` when ``backend="triton"`` cannot run on ``device`` (no triton, or CPU without the
    interpreter)."""
    if backend != "triton":
        return
    if not triton_available():
        raise NotApplicableError(f"{method}: backend='triton' needs the triton package; use backend='auto'")
    if device.type != "cuda" and not triton_interpret_mode():
        raise NotApplicableError(
            f"{method}: backend='triton' needs the denoiser on a CUDA GPU (it is on {device}) or TRITON_INTERPRET=1; "
            "use backend='auto'"
        )


def model_device(pipe: Any) -> torch.device:
    """Device of the denoiser's first parameter (CPU for a parameterless model)."""
    param = next(denoiser(pipe).parameters(), None)
    return param.device if param is not None else torch.device("cpu")

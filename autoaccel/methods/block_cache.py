"""Adaptive residual caching of transformer blocks (DBCache / First-Block-Cache family).

Follows First Block Cache (ParaAttention, 2024; itself after TeaCache, Liu et al. 2024, arXiv:2411.19108) and its
generalisation DBCache (cache-dit, 2025): the first ``fn_blocks`` blocks always run; the relative L1 change of their
residual against the last fully computed step decides whether the middle blocks run or are replaced by their cached
residual; the last ``bn_blocks`` blocks always run. Written on diffusers' hook registry; block output layouts come
from diffusers' ``TransformerBlockRegistry``.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from pydantic import Field

from ..errors import NotApplicableError
from . import register
from ._base import Handle, MethodConfig, MethodSpec, knob
from ._pipeline import TRANSFORMER_FAMILIES, Block, denoiser, require_family, transformer_blocks
from ._tracker import StepTracker, acquire_tracker

_HOOK = "autoaccel.block_cache"


class BlockCacheConfig(MethodConfig):
    """Knobs of `block_cache`. Higher ``threshold`` or ``max_consecutive_cached``: faster, lower quality."""

    threshold: float = Field(
        ge=0.0,
        le=1.0,
        **knob(
            0.08,
            "Relative L1 change of the head residual below which the middle blocks are reused. 0 never caches.",
            low=0.01,
            high=0.5,
            log=True,
        ),
    )
    fn_blocks: int = Field(
        ge=1, le=64, **knob(1, "Blocks always computed first (Fn); their residual is compared.", low=1, high=4)
    )
    bn_blocks: int = Field(ge=0, le=64, **knob(0, "Blocks always computed last (Bn).", low=0, high=4))
    warmup_steps: int = Field(
        ge=0, le=1000, **knob(1, "Steps at the start that are always fully computed.", low=0, high=8)
    )
    max_consecutive_cached: int = Field(
        ge=1, le=1000, **knob(3, "Cap on consecutive cached steps before a full step is forced.", low=1, high=8)
    )


class _BranchState:
    def __init__(self) -> None:
        self.head_input: torch.Tensor | None = None
        self.prev_residual: torch.Tensor | None = None
        self.mid_input: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.cached: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.skip = False
        self.consecutive = 0


class _Shared:
    """State shared by the hooks of one application: per-branch caches, the tracker and counters."""

    def __init__(self, config: BlockCacheConfig, tracker: StepTracker, stats: dict[str, int]) -> None:
        self.config, self.tracker, self.stats = config, tracker, stats
        self.branches: dict[int, _BranchState] = {}

    def state(self) -> _BranchState:
        return self.branches.setdefault(self.tracker.branch, _BranchState())

    def decide(self, st: _BranchState, residual: torch.Tensor) -> None:
        cfg = self.config
        skip = False
        comparable = st.prev_residual is not None and st.prev_residual.shape == residual.shape
        if comparable and st.cached is not None and self.tracker.step >= cfg.warmup_steps:
            if st.consecutive < cfg.max_consecutive_cached:
                prev = st.prev_residual
                diff = (residual - prev).abs().mean() / prev.abs().mean().clamp_min(1e-12)
                skip = bool(diff < cfg.threshold)
        st.skip = skip
        if skip:
            st.consecutive += 1
            self.stats["cached_steps"] += 1
        else:
            st.consecutive = 0
            st.prev_residual = residual
            self.stats["computed_steps"] += 1


class _BlockHook(ModelHook):
    def __init__(
        self, block: Block, shared: _Shared, *, first: bool, head_end: bool, mid_start: bool, mid: bool, mid_end: bool
    ) -> None:
        super().__init__()
        self.meta, self.shared = block.meta, shared
        self.first, self.head_end, self.mid_start, self.mid, self.mid_end = first, head_end, mid_start, mid, mid_end

    def _inputs(self, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        meta = self.meta
        h = meta._get_parameter_from_args_kwargs(meta.hidden_states_argument_name, args, kwargs)
        e = None
        if meta.return_encoder_hidden_states_index is not None:
            e = meta._get_parameter_from_args_kwargs(meta.encoder_hidden_states_argument_name, args, kwargs)
        return h, e

    def _outputs(self, out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        meta = self.meta
        if meta.return_encoder_hidden_states_index is None:
            return (out[meta.return_hidden_states_index] if isinstance(out, tuple) else out), None
        return out[meta.return_hidden_states_index], out[meta.return_encoder_hidden_states_index]

    def _format(self, h: torch.Tensor, e: torch.Tensor | None) -> Any:
        meta = self.meta
        if meta.return_encoder_hidden_states_index is None:
            return h
        out: list[Any] = [None, None]
        out[meta.return_hidden_states_index] = h
        out[meta.return_encoder_hidden_states_index] = e
        return tuple(out)

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        shared = self.shared
        st = shared.state()
        h, e = self._inputs(args, kwargs)
        if self.first:
            st.head_input = h
        if self.mid and st.skip:
            shared.stats["skipped_blocks"] += 1
            if not self.mid_end:
                return self._format(h, e)
            res_h, res_e = st.cached
            return self._format(h + res_h, None if res_e is None else e + res_e)
        if self.mid_start:
            st.mid_input = (h, e)
        out = self.fn_ref.original_forward(*args, **kwargs)
        shared.stats["computed_blocks"] += 1
        if self.head_end or self.mid_end:
            out_h, out_e = self._outputs(out)
            if self.head_end:
                shared.decide(st, out_h - st.head_input)
            if self.mid_end:
                in_h, in_e = st.mid_input
                st.cached = (out_h - in_h, None if out_e is None or in_e is None else out_e - in_e)
        return out


def _middle(pipe: Any, config: BlockCacheConfig) -> list[Block]:
    blocks = transformer_blocks(denoiser(pipe))
    if config.fn_blocks + config.bn_blocks >= len(blocks):
        raise NotApplicableError(
            f"block_cache: fn_blocks ({config.fn_blocks}) + bn_blocks ({config.bn_blocks}) must leave at least one "
            f"middle block to cache; this denoiser has {len(blocks)} blocks"
        )
    return blocks


def check(pipe: Any, config: BlockCacheConfig) -> None:
    require_family(pipe, "block_cache", TRANSFORMER_FAMILIES)
    _middle(pipe, config)


def apply(pipe: Any, config: BlockCacheConfig) -> Handle:
    check(pipe, config)
    blocks = _middle(pipe, config)
    fn, n = config.fn_blocks, len(blocks)
    mid_lo, mid_hi = fn, n - config.bn_blocks - 1
    stats = {"computed_steps": 0, "cached_steps": 0, "computed_blocks": 0, "skipped_blocks": 0}
    tracker = acquire_tracker(pipe)
    shared = _Shared(config, tracker, stats)
    unsubscribe = tracker.on_reset(shared.branches.clear)
    registries: list[HookRegistry] = []
    try:
        for i, block in enumerate(blocks):
            hook = _BlockHook(
                block,
                shared,
                first=i == 0,
                head_end=i == fn - 1,
                mid_start=i == mid_lo,
                mid=mid_lo <= i <= mid_hi,
                mid_end=i == mid_hi,
            )
            registry = HookRegistry.check_if_exists_or_initialize(block.module)
            registry.register_hook(hook, _HOOK)
            registries.append(registry)
    except Exception:
        for registry in registries:
            registry.remove_hook(_HOOK, recurse=False)
        unsubscribe()
        tracker.release()
        raise

    def undo() -> None:
        for registry in registries:
            registry.remove_hook(_HOOK, recurse=False)
        unsubscribe()
        tracker.release()

    return Handle("block_cache", undo, stats)


SPEC = register(
    MethodSpec(
        name="block_cache",
        config=BlockCacheConfig,
        apply=apply,
        check=check,
        stage=50,
        group="feature_cache",
        paper="First Block Cache (ParaAttention 2024), TeaCache (arXiv:2411.19108), DBCache (cache-dit 2025)",
        families=TRANSFORMER_FAMILIES,
        summary="Reuse the middle blocks' residual when the first blocks' residual barely changes.",
        activity=("cached_steps",),
    )
)

"""Known-good settings enqueued first (warm start), from each method's paper or reference implementation."""

from __future__ import annotations

import logging
from typing import Any

from ..budget import Budget

logger = logging.getLogger("autoaccel")
STORED_LIMIT = 5  # stored recipes enqueued at most

# (methods) tuples; each is enqueued when all its methods are in the search space.
PRESETS: list[list[tuple[str, dict[str, Any]]]] = [
    # ParaAttention's First Block Cache default for FLUX (residual diff threshold 0.08) and a faster one.
    [
        (
            "block_cache",
            {"threshold": 0.08, "fn_blocks": 1, "bn_blocks": 0, "warmup_steps": 1, "max_consecutive_cached": 3},
        )
    ],
    [
        (
            "block_cache",
            {"threshold": 0.12, "fn_blocks": 1, "bn_blocks": 0, "warmup_steps": 1, "max_consecutive_cached": 4},
        )
    ],
    # cache-dit's DBCache F1B0 / F8B0-style settings, scaled to the model's depth by the space's ranges.
    [
        (
            "block_cache",
            {"threshold": 0.05, "fn_blocks": 2, "bn_blocks": 1, "warmup_steps": 2, "max_consecutive_cached": 2},
        )
    ],
    # TaylorSeer paper (N=5, O=1 for FLUX; diffusers' example: interval 5, order 1, 3 warm-up steps) and N=3.
    [("taylorseer", {"interval": 5, "order": 1, "warmup_steps": 3})],
    [("taylorseer", {"interval": 3, "order": 1, "warmup_steps": 3})],
    # MagCache's FLUX defaults (threshold 0.06, K=3, retention 0.2); needs calibrated ratios (fixed by the search).
    [("magcache", {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2})],
    # Pyramid Attention Broadcast's default window (100, 800) with a range of 2.
    [("pab", {"self_attention_skip_range": 2, "window_low_t": 100.0, "window_high_t": 800.0})],
    # Adaptive-guidance style truncation after half of the steps.
    [("cfg_truncation", {"after_fraction": 0.5})],
    # DeepCache's uniform 1:3 schedule on the outermost branch.
    [("deep_cache", {"interval": 3, "branch": 0, "warmup_steps": 1})],
]


STEP_FRACTIONS = (0.75, 0.5, 0.35)
FEW_STEPS = 8  # every step count from 1 to this is on the ladder: the budget's threshold usually lies there


def step_ladder(steps: int) -> list[int]:
    """Step counts of the warm-start ladder for a model called with ``steps``: a few fractions, then every count up to
    `FEW_STEPS` (one step more or less is often the difference between meeting a budget and missing it)."""
    counts = {max(1, round(steps * f)) for f in STEP_FRACTIONS} | set(range(1, FEW_STEPS + 1))
    return sorted((n for n in counts if n < steps), reverse=True)


def applicable_presets(groups: dict[str, list[str]], steps: int | None) -> list[list[tuple[str, dict[str, Any]]]]:
    """Warm-start trials: the papers' presets whose methods are searchable here, then a ladder of fewer steps.

    The ladder runs each count of `step_ladder` with the UniPC solver and ``compile`` when those are searchable:
    both keep the model calls the same and only lower the error or the per-call overhead, so this is the strongest
    generic family to map first. Plain fewer steps and everything else are left to the sampler.
    """
    searchable = {m for methods in groups.values() for m in methods}
    out = [p for p in PRESETS if all(name in searchable for name, _ in p)]
    if steps and "steps" in searchable:
        extra = [("compile", {"denoiser": True})] if "compile" in searchable else []
        out += [[("steps", {"num_inference_steps": n, "solver": "unipc"}), *extra] for n in step_ladder(steps)]
    return out


def stored_presets(
    recipe_db: Any, model_id: str | None, pipeline_class: str, budget: Budget, arch_class: str | None
) -> list[list[tuple[str, dict[str, Any]]]]:
    """The best validated recipes already in the database for similar models, as warm-start trials.

    Similar: the same model, else the same pipeline class (the same architecture family). Ranked: same model first,
    then recipes whose stored quality meets ``budget``, then same hardware architecture class, then speed. At most
    `STORED_LIMIT`, duplicates dropped. A database that cannot be read gives none (logged), never an error.
    """
    from ..db import meets_budget

    try:
        same_model = recipe_db.list_recipes(model_id=model_id, validated=True, limit=100)[0] if model_id else []
        same_class = recipe_db.list_recipes(pipeline_class=pipeline_class, validated=True, limit=100)[0]
        similar = list({i.id: i for i in [*same_model, *same_class]}.values())
        similar.sort(
            key=lambda i: (
                i.model_id != model_id,
                not meets_budget(budget, i.quality),
                i.arch_class != arch_class,
                -(i.speedup or 0.0),
            )
        )
        out: list[list[tuple[str, dict[str, Any]]]] = []
        for info in similar:
            methods = [(name, cfg.model_dump()) for name, cfg in recipe_db.get_recipe(info.id).configs()]
            if methods and methods not in out:
                out.append(methods)
            if len(out) == STORED_LIMIT:
                break
        return out
    except Exception as e:  # a warm start is an optimisation: never let it stop the search
        logger.warning("stored recipes not used as a warm start: %s", e)
        return []

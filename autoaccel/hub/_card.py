"""The model card of a recipe repository: Hub metadata (``ModelCardData``) and a plain-words body.

Tags: ``autoaccel``, ``acceleration-recipe``, the hardware key (`hardware_key`, e.g. ``nvidia-h100-80gb-hbm3``), the
architecture class (``hopper``) and the model family (``flux``, ``sd3``, ``pixart``, ``dit``, ``sd``) when known. The
Hub adds ``base_model:<id>`` from ``base_model``, which `autoaccel.hub.find_recipes` filters on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..errors import RecipeError
from ..hardware import HardwareProfile, slug
from ..recipes import Recipe
from ._metrics import RecipeMetrics, budget_violations, parse_metrics

__all__ = ["LIBRARY_NAME", "RECIPE_TAG", "arch_class", "build_card", "hardware_key", "model_family", "recipe_tags"]

LIBRARY_NAME = "autoaccel"
RECIPE_TAG = "acceleration-recipe"
RECIPE_FILENAME = "autoaccel_recipe.json"
PARETO_FILENAME = "pareto.png"

# Substring of the lowercased pipeline class (or model id) -> family; first match wins, so sd3 precedes sd.
_FAMILY_HINTS = (
    ("flux", "flux"),
    ("stablediffusion3", "sd3"),
    ("stable-diffusion-3", "sd3"),
    ("pixart", "pixart"),
    ("dit", "dit"),
    ("stablediffusion", "sd"),
    ("stable-diffusion", "sd"),
)
_HW_NAME_KEYS = ("name", "device_name", "gpu_name", "cpu_name")
_SOFTWARE_KEYS = (
    ("driver_version", "NVIDIA driver"),
    ("cuda_version", "CUDA"),
    ("torch_version", "PyTorch"),
    ("diffusers_version", "diffusers"),
    ("autoaccel_version", "autoaccel"),
)


def hardware_key(hardware: HardwareProfile | Mapping[str, Any] | str | None) -> str | None:
    """The device key of `HardwareProfile.key` (``"nvidia-h100-80gb-hbm3"``) for a profile, a recipe's hardware
    dict or a key (returned as is); None when there is no device name."""
    if hardware is None or isinstance(hardware, str):
        return hardware or None
    if isinstance(hardware, HardwareProfile):
        return hardware.key()
    if not isinstance(hardware, Mapping):
        return None
    if isinstance(hardware.get("key"), str) and hardware["key"]:
        return slug(hardware["key"])
    name = next((str(hardware[k]) for k in _HW_NAME_KEYS if isinstance(hardware.get(k), str) and hardware[k]), None)
    if name is None:
        return None
    kind = hardware.get("device_kind")
    if not isinstance(kind, str):
        return slug(name) or None
    fields = {"device_kind": kind, "name": name, "arch_class": str(hardware.get("arch_class") or "")}
    return HardwareProfile.model_construct(**fields, machine=str(hardware.get("machine") or "")).key() or None


def arch_class(hardware: HardwareProfile | Mapping[str, Any] | None) -> str | None:
    """The architecture class (``"hopper"``) of a profile or hardware dict, when known."""
    value = getattr(hardware, "arch_class", None) if not isinstance(hardware, Mapping) else hardware.get("arch_class")
    return value if isinstance(value, str) and value else None


def model_family(recipe: Recipe) -> str | None:
    """``flux``, ``sd3``, ``pixart``, ``dit`` or ``sd`` from the recipe's pipeline class (else its model id)."""
    for text in (recipe.pipeline_class, recipe.model_id):
        if not text:
            continue
        lowered = text.lower()
        for hint, family in _FAMILY_HINTS:
            if hint in lowered:
                return family
    return None


def recipe_tags(recipe: Recipe) -> list[str]:
    """The card tags of a recipe (see the module docstring)."""
    tags = [LIBRARY_NAME, RECIPE_TAG, hardware_key(recipe.hardware), arch_class(recipe.hardware), model_family(recipe)]
    return list(dict.fromkeys(t for t in tags if t))


def build_card(recipe: Recipe, repo_id: str, *, has_pareto: bool = False) -> ModelCard:
    """The README.md model card of a recipe repository.

    Args:
        recipe: The recipe; ``recipe.model_id`` becomes ``base_model``.
        repo_id: The repository the card is for (used in the usage line).
        has_pareto: Whether the repository holds ``pareto.png`` (the card shows it).

    Raises:
        RecipeError: The recipe names no ``model_id``.
    """
    if not recipe.model_id:
        raise RecipeError("a recipe published to the Hub must name the model it accelerates", field="model_id")
    metrics = parse_metrics(recipe.metrics)
    data = ModelCardData(
        base_model=recipe.model_id,
        library_name=LIBRARY_NAME,
        tags=recipe_tags(recipe),
        model_name=repo_id.split("/")[-1],
        eval_results=_eval_results(recipe, metrics) or None,
        autoaccel=_summary(recipe, metrics),
    )
    return ModelCard.from_template(data, template_str=_TEMPLATE, **_body(recipe, metrics, repo_id, has_pareto))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def _ci(pair: tuple[float, float] | None) -> str:
    return f"[{_fmt(pair[0])}, {_fmt(pair[1])}]" if pair else "n/a"


def _dataset(recipe: Recipe) -> tuple[str, str]:
    workload = recipe.workload or {}
    name = next((str(workload[k]) for k in ("prompt_set", "prompts_name", "dataset") if workload.get(k)), None)
    return (slug(name) or "autoaccel-prompts", name) if name else ("autoaccel-prompts", "AutoAccel validation prompts")


def _eval_results(recipe: Recipe, metrics: RecipeMetrics) -> list[EvalResult]:
    dataset_type, dataset_name = _dataset(recipe)
    common = {"task_type": "text-to-image", "dataset_type": dataset_type, "dataset_name": dataset_name}
    results = []
    if metrics.speedup is not None:
        name = f"Speedup over the unaccelerated pipeline (95% CI {_ci(metrics.speedup_ci95)})"
        results.append(EvalResult(**common, metric_type="speedup", metric_value=metrics.speedup, metric_name=name))
    for metric, stats in metrics.quality.items():
        value = stats.value("mean")
        if value is None or not math.isfinite(value):
            continue
        name = f"{metric} vs. the unaccelerated outputs, mean (95% CI {_ci(stats.ci95)})"
        results.append(EvalResult(**common, metric_type=metric, metric_value=value, metric_name=name))
    return results


def _summary(recipe: Recipe, metrics: RecipeMetrics) -> dict[str, Any]:
    """Machine-readable summary under the card's ``autoaccel`` key (aggregates only, no per-image values)."""
    out: dict[str, Any] = {"recipe_file": RECIPE_FILENAME, "schema_version": recipe.schema_version}
    optional = {
        "base_model_revision": recipe.revision,
        "pipeline_class": recipe.pipeline_class,
        "dtype": recipe.dtype,
        "hardware": hardware_key(recipe.hardware),
        "budget": recipe.budget,
        "speedup": metrics.speedup,
        "speedup_ci95": list(metrics.speedup_ci95) if metrics.speedup_ci95 else None,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    out["methods"] = [m.name for m in recipe.methods]
    quality = {
        name: {k: v for k, v in stats.aggregates.items() if math.isfinite(v)}
        | ({"ci95": list(stats.ci95)} if stats.ci95 else {})
        for name, stats in metrics.quality.items()
    }
    if any(quality.values()):
        out["quality"] = {k: v for k, v in quality.items() if v}
    return out


def _body(recipe: Recipe, metrics: RecipeMetrics, repo_id: str, has_pareto: bool) -> dict[str, Any]:
    """Template variables: sentences are assembled here so the template stays short and readable."""
    from ..methods import get

    methods = []
    for entry in recipe.methods:
        spec = get(entry.name)
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in entry.params.items()) or "defaults"
        line = f"**{entry.name}** ({params})" + (f": {spec.summary}" if spec.summary else "")
        methods.append(line + (f" ({spec.paper})" if spec.paper else ""))
    quality = []
    for name, stats in metrics.quality.items():
        line = (
            f"{name} against the unaccelerated outputs: mean **{_fmt(stats.value('mean'))}** (95% CI {_ci(stats.ci95)})"
        )
        others = ", ".join(f"{k} {_fmt(v)}" for k, v in stats.aggregates.items() if k != "mean")
        line += (f"; {others}" if others else "") + (f" over {len(stats.per_image)} images" if stats.per_image else "")
        quality.append(line)
    if recipe.budget:
        violations = budget_violations(recipe.budget, metrics)
        verdict = "met by the numbers above" if not violations else f"**not shown to be met** ({'; '.join(violations)})"
        quality.append(f"Quality budget: `{recipe.budget}`, {verdict}")
    hardware = recipe.hardware or {}
    device = next((str(hardware[k]) for k in _HW_NAME_KEYS if hardware.get(k)), "an unrecorded device")
    ids = ", ".join(x for x in (hardware_key(recipe.hardware), arch_class(recipe.hardware)) if x)
    software = ", ".join(f"{label} {hardware[k]}" for k, label in _SOFTWARE_KEYS if hardware.get(k))
    workload = ", ".join(f"{k}={json.dumps(v)}" for k, v in (recipe.workload or {}).items() if _short(v))
    provenance = ", ".join(f"{k}={json.dumps(v)}" for k, v in (recipe.provenance or {}).items() if _short(v))
    files = f"the recipe (`{RECIPE_FILENAME}`), this card" + (
        f" and the Pareto plot (`{PARETO_FILENAME}`)" if has_pareto else ""
    )
    return {
        "repo_id": repo_id,
        "base_model": recipe.model_id,
        "revision": recipe.revision or "main, not pinned",
        "files": files,
        "runs": f"`{recipe.pipeline_class or 'the model pipeline'}`"
        + (f" in `{recipe.dtype}`" if recipe.dtype else ""),
        "methods": methods,
        "speedup": f"**{_fmt(metrics.speedup, 3)}x** (95% confidence interval {_ci(metrics.speedup_ci95)})",
        "quality": quality,
        "pareto": PARETO_FILENAME if has_pareto else None,
        "device": f"**{device}**" + (f" (`{ids}`)" if ids else ""),
        "software": software or "unrecorded software versions",
        "workload": workload or "not recorded",
        "budget_literal": json.dumps(recipe.budget or "lpips<0.1"),
        "provenance": f" This recipe's search: {provenance}." if provenance else "",
    }


def _short(value: Any) -> bool:
    return not isinstance(value, (dict, list)) and len(json.dumps(value)) <= 120


_TEMPLATE = """---
{{ card_data }}
---

# AutoAccel recipe for {{ base_model }}

This repository holds an AutoAccel acceleration recipe for [`{{ base_model }}`](https://huggingface.co/{{ base_model }})
(model revision `{{ revision }}`). It contains **no model weights**: only {{ files }}.
AutoAccel applies the recipe to the original pipeline when loading it; nothing is retrained.

## What it does

The recipe runs {{ runs }} with these training-free methods, applied in order:

{% for line in methods -%}
- {{ line }}
{% endfor %}
## Measured speed and quality

- Speedup over the unaccelerated pipeline: {{ speedup }}.
{% for line in quality -%}
- {{ line }}.
{% endfor %}
{% if pareto %}![Speed/quality Pareto front of the search]({{ pareto }})

{% endif -%}
Workload measured: {{ workload }}.

## Hardware and software

Measured on {{ device }} with {{ software }}. Speedups depend on the GPU: on other hardware, validate the recipe
before relying on its numbers.

## Use it

```python
from autoaccel import AutoAccel

pipe = AutoAccel.from_pretrained("{{ base_model }}", recipe="{{ repo_id }}")
```

Or load only the recipe with `Recipe.from_pretrained("{{ repo_id }}")`, or from a shell: `autoaccel pull {{ repo_id }}`.

## Reproduce the search

```python
pipe = AutoAccel.from_pretrained("{{ base_model }}", budget={{ budget_literal }}, search=True)
```

Run it on the same hardware with the workload above.{{ provenance }}
"""

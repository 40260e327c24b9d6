"""Workloads: exactly what a measurement generates (prompts or class labels, seeds, size, steps, guidance, ...).

A `Workload` is a typed, JSON/YAML-serialisable description. Its items are every (prompt or class label, seed) pair,
prompts outer, seeds inner; `Workload.pipeline_kwargs` turns a batch of items into the keyword arguments of one
pipeline call, always with ``output_type="pt"`` (NCHW float images in [0, 1]) and one fresh
``torch.Generator(device).manual_seed(seed)`` per item, so an item's output does not depend on its batch.

Example:
    >>> from autoaccel.workload import Workload
    >>> w = Workload(prompts="calibration", seeds=[0, 1], num_inference_steps=28, height=1024, width=1024)
    >>> len(w), w.items()[1]
    (16, WorkloadItem(prompt='a close-up photo of a red fox sitting in fresh snow, looking at the camera', seed=1))
    >>> images = pipe(**w.pipeline_kwargs(w.items()[:2], device="cuda")).images
    >>> w.to_file("workload.yaml"); Workload.from_file("workload.yaml") == w
    True
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator, model_validator

from autoaccel import prompts as prompt_sets
from autoaccel.errors import AutoAccelError

__all__ = ["OWNED_KWARGS", "Workload", "WorkloadError", "WorkloadItem"]

MAX_WORKLOAD_BYTES = 10_000_000

_WHY_FIELD = "it is a workload field; set `{}` instead"
_WHY_TENSOR = "tensor inputs cannot be stored in a workload; pass prompts (text) instead"
OWNED_KWARGS: dict[str, str] = {
    "prompt": "the workload sets it from `prompts`",
    "prompt_2": "the workload sets prompts; secondary prompts default to the prompt",
    "prompt_3": "the workload sets prompts; secondary prompts default to the prompt",
    "class_labels": _WHY_FIELD.format("class_labels"),
    "height": _WHY_FIELD.format("height"),
    "width": _WHY_FIELD.format("width"),
    "num_inference_steps": _WHY_FIELD.format("num_inference_steps"),
    "guidance_scale": _WHY_FIELD.format("guidance_scale"),
    "generator": "the workload makes one generator per item from `seeds`",
    "latents": "initial noise comes from `seeds`",
    "output_type": 'outputs are always requested as output_type="pt"',
    "return_dict": "the profiler reads `.images` from the returned output",
    "num_images_per_prompt": "use several `seeds` (and `batch_size`) instead",
    "callback": "the profiler owns the denoising loop",
    "callback_steps": "the profiler owns the denoising loop",
    "callback_on_step_end": "the profiler owns the denoising loop",
    "callback_on_step_end_tensor_inputs": "the profiler owns the denoising loop",
    **{
        k: _WHY_TENSOR
        for k in (
            "prompt_embeds",
            "pooled_prompt_embeds",
            "negative_prompt_embeds",
            "negative_pooled_prompt_embeds",
            "prompt_attention_mask",
            "negative_prompt_attention_mask",
            "ip_adapter_image",
            "ip_adapter_image_embeds",
        )
    },
}
"""Pipeline call arguments the workload sets itself, with the reason; `call_kwargs` may not contain them."""

_NEGATIVE_PROMPTS = ("negative_prompt", "negative_prompt_2", "negative_prompt_3")
_FIELD_KWARGS = ("height", "width", "num_inference_steps", "guidance_scale")
_IDENTITY_FIELDS = {"prompts", "class_labels", "seeds", "name"}


class WorkloadError(AutoAccelError, ValueError):
    """A workload is invalid or does not fit the pipeline; the message names the field or argument."""


class WorkloadItem(NamedTuple):
    """One generation: a prompt (``str``), a class label (``int``, DiT) or ``None`` (unconditional), and a seed."""

    prompt: str | int | None
    seed: int


class Workload(BaseModel):
    """What a measurement generates. Unset fields (``None``) use the pipeline's own defaults.

    Args:
        name: A label for reports (e.g. the prompt set name); not part of the fingerprint.
        prompts: Text prompts, or the name of a prompt set / path of a prompt file (see `autoaccel.prompts`),
            which is loaded into the list.
        class_labels: Class ids for class-conditional pipelines (DiT). At most one of ``prompts``/``class_labels``.
        seeds: Seeds; every prompt (or label) is generated once per seed.
        height / width: Image size in pixels.
        num_inference_steps: Denoising steps.
        guidance_scale: Guidance scale (classifier-free, or embedded guidance for FLUX.1-dev).
        batch_size: Items per pipeline call.
        dtype: The pipeline dtype the workload is meant for (``"bfloat16"``, ...); `check` enforces it.
        call_kwargs: Further JSON keyword arguments of the pipeline call (``negative_prompt``,
            ``max_sequence_length``, ``use_resolution_binning``, ...); keys of `OWNED_KWARGS` are refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, max_length=200)
    prompts: list[str] | None = Field(default=None, min_length=1)
    class_labels: list[int] | None = Field(default=None, min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    height: int | None = Field(default=None, ge=1, le=65536)
    width: int | None = Field(default=None, ge=1, le=65536)
    num_inference_steps: int | None = Field(default=None, ge=1, le=10000)
    guidance_scale: float | None = Field(default=None, allow_inf_nan=False)
    batch_size: int = Field(default=1, ge=1, le=4096)
    dtype: Literal["float32", "float16", "bfloat16", "float64"] | None = None
    call_kwargs: dict[str, JsonValue] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise WorkloadError(_describe(e, "workload")) from None

    # -- validation ---------------------------------------------------------------------------------------------
    @field_validator("prompts", mode="before")
    @classmethod
    def _load_prompt_set(cls, value: Any) -> Any:
        if isinstance(value, (str, Path)):
            return prompt_sets.load(value)
        return value

    @field_validator("prompts")
    @classmethod
    def _nonempty_prompts(cls, value: list[str] | None) -> list[str] | None:
        for i, prompt in enumerate(value or []):
            if not prompt.strip():
                raise ValueError(f"prompt {i} is empty")
        return value

    @field_validator("class_labels", "seeds")
    @classmethod
    def _nonnegative(cls, value: list[int] | None) -> list[int] | None:
        for v in value or []:
            if not 0 <= v < 2**63:
                raise ValueError(f"{v} is out of range; class labels and seeds must be in [0, 2**63)")
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct, got {value}")
        return value

    @field_validator("call_kwargs")
    @classmethod
    def _allowed_kwargs(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for key in value:
            if key in OWNED_KWARGS:
                raise ValueError(f"may not contain {key!r}: {OWNED_KWARGS[key]}")
            if not key.isidentifier():
                raise ValueError(f"call_kwargs key {key!r} is not a valid argument name")
        return value

    @model_validator(mode="after")
    def _one_condition(self) -> Workload:
        if self.prompts is not None and self.class_labels is not None:
            raise ValueError("set `prompts` or `class_labels`, not both")
        return self

    # -- items ----------------------------------------------------------------------------------------------------
    def items(self) -> list[WorkloadItem]:
        """Every (prompt or label, seed) pair: conditions in order, each with every seed in order."""
        conditions: Sequence[str | int | None] = self.prompts or self.class_labels or [None]
        return [WorkloadItem(c, s) for c in conditions for s in self.seeds]

    def __len__(self) -> int:
        return len(self.prompts or self.class_labels or [None]) * len(self.seeds)

    def batches(self, items: Sequence[WorkloadItem] | None = None) -> list[list[WorkloadItem]]:
        """``items`` (default: all) in consecutive batches of ``batch_size``."""
        items = list(self.items() if items is None else items)
        return [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]

    def subset(self, n: int | None = None, *, seeds: int | None = None) -> Workload:
        """The same workload with only the first ``n`` prompts (or labels) and the first ``seeds`` seeds."""
        for label, value in (("n", n), ("seeds", seeds)):
            if value is not None and value < 1:
                raise WorkloadError(f"subset: {label} must be at least 1, got {value}")
        update: dict[str, Any] = {}
        if n is not None and self.prompts is not None:
            update["prompts"] = self.prompts[:n]
        if n is not None and self.class_labels is not None:
            update["class_labels"] = self.class_labels[:n]
        if seeds is not None:
            update["seeds"] = self.seeds[:seeds]
        return self.model_copy(update=update)

    def pipeline_kwargs(self, items: Sequence[WorkloadItem], *, device: str | torch.device = "cpu") -> dict[str, Any]:
        """Keyword arguments of one pipeline call generating ``items`` (one batch).

        Args:
            items: Items of this workload (from `items` or `batches`).
            device: Where the per-item generators live (the pipeline's execution device).
        """
        if not items:
            raise WorkloadError("pipeline_kwargs needs at least one item")
        kwargs: dict[str, Any] = {k: v for k, v in self.call_kwargs.items()}
        for key in _NEGATIVE_PROMPTS:  # a single negative prompt must match the batch for some pipelines (SD)
            if isinstance(kwargs.get(key), str):
                kwargs[key] = [kwargs[key]] * len(items)
        if self.prompts is not None:
            kwargs["prompt"] = [str(item.prompt) for item in items]
        elif self.class_labels is not None:
            kwargs["class_labels"] = [int(item.prompt) for item in items]  # type: ignore[arg-type]
        elif len(items) > 1:
            kwargs["batch_size"] = len(items)
        for key in _FIELD_KWARGS:
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        kwargs["generator"] = [torch.Generator(device).manual_seed(item.seed) for item in items]
        kwargs["output_type"] = "pt"
        return kwargs

    # -- identity -----------------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON of everything but ``name``; equal workloads have equal fingerprints."""
        return _sha256_json(self.model_dump(mode="json", exclude={"name"}))

    def generation_fingerprint(self) -> str:
        """sha256 of the settings shared by all items (all but prompts, labels, seeds and name).

        Two workloads with the same generation fingerprint make the same image for the same (prompt, seed), so the
        baseline cache keys items by this, the prompt and the seed: a `subset` reuses the full workload's entries.
        """
        return _sha256_json(self.model_dump(mode="json", exclude=_IDENTITY_FIELDS))

    # -- files ----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "workload") -> Workload:
        """Validate a parsed mapping; errors are `WorkloadError` naming the field."""
        if not isinstance(data, Mapping):
            raise WorkloadError(f"{source}: a workload must be a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as e:
            raise WorkloadError(_describe(e, source)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> Workload:
        """Read a ``.json``, ``.yaml`` or ``.yml`` workload. A relative prompt file path is resolved from the file."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise WorkloadError(f"{path}: unsupported workload file type {path.suffix!r}; use .json, .yaml or .yml")
        try:
            if path.stat().st_size > MAX_WORKLOAD_BYTES:
                raise WorkloadError(f"{path}: larger than {MAX_WORKLOAD_BYTES} bytes")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise WorkloadError(f"{path}: cannot read workload file: {e}") from None
        try:
            if suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as e:  # json.JSONDecodeError or yaml.YAMLError; both carry the position
            raise WorkloadError(f"{path}: not valid {suffix[1:].upper()}: {e}") from None
        if isinstance(data, dict) and isinstance(data.get("prompts"), str):
            ref = data["prompts"]
            if ref not in prompt_sets.available() and not Path(ref).is_absolute():
                data = {**data, "prompts": str(path.parent / ref)}
        return cls.from_dict(data, source=str(path))

    def to_file(self, path: str | Path) -> Path:
        """Write as JSON (``.json``) or YAML (``.yaml``/``.yml``); prompts are written out in full."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        elif suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        else:
            raise WorkloadError(f"{path}: unsupported workload file type {path.suffix!r}; use .json, .yaml or .yml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    # -- construction from a pipeline -----------------------------------------------------------------------------
    @classmethod
    def for_pipeline(
        cls,
        pipe: Any,
        *,
        prompts: str | Path | Sequence[str] | None = None,
        class_labels: Sequence[int] | None = None,
        seeds: Sequence[int] = (0,),
        **fields: Any,
    ) -> Workload:
        """The default workload for a pipeline: its family's prompts, its dtype, and the pipeline's defaults.

        Defaults: DiT pipelines get 8 class labels spread over ``pipe.labels``; the reference Fashion-MNIST pipeline
        gets the ``fashion`` prompt set; every other pipeline gets the ``calibration`` set (pass
        ``prompts="default"`` for the full 76-prompt set). ``dtype`` is the denoiser's.

        Args:
            pipe: A diffusers pipeline.
            prompts / class_labels / seeds: Override the defaults.
            **fields: Other `Workload` fields (``num_inference_steps``, ``height``, ``call_kwargs``, ...).
        """
        from autoaccel.methods._pipeline import denoiser, family

        fam = family(pipe)
        if class_labels is None and prompts is None:
            if fam == "dit":
                ids = sorted(set(getattr(pipe, "labels", {}).values())) or list(range(1000))
                class_labels = ids[:: max(1, len(ids) // 8)][:8]
            elif type(pipe).__name__ == "FashionFluxPipeline":
                prompts = "fashion"
            else:
                prompts = "calibration"
        data: dict[str, Any] = {"seeds": list(seeds), **fields}
        if class_labels is not None:
            data["class_labels"] = list(class_labels)
        if prompts is not None:
            data["prompts"] = prompts if isinstance(prompts, (str, Path)) else list(prompts)
            data.setdefault("name", str(prompts) if isinstance(prompts, str) else None)
        data.setdefault("dtype", str(denoiser(pipe).dtype).removeprefix("torch."))
        return cls.from_dict(data)

    @classmethod
    def from_call_kwargs(
        cls, kwargs: Mapping[str, Any], *, seeds: Sequence[int] | None = None, **fields: Any
    ) -> Workload:
        """A workload from the keyword arguments of a pipeline call (e.g. ``autoaccel.testing.default_call_kwargs``).

        ``prompt`` becomes ``prompts``; ``height``, ``width``, ``num_inference_steps``, ``guidance_scale`` and
        ``class_labels`` become fields; ``generator`` gives the seed (unless ``seeds`` is given); ``output_type`` and
        ``return_dict`` are dropped; everything else goes to ``call_kwargs``. ``fields`` override.
        """
        rest = dict(kwargs)
        data: dict[str, Any] = {}
        prompt = rest.pop("prompt", None)
        if prompt is not None:
            data["prompts"] = [prompt] if isinstance(prompt, str) else list(prompt)
        for key in ("class_labels", "height", "width", "num_inference_steps", "guidance_scale"):
            if rest.get(key) is not None:
                data[key] = rest.pop(key)
        generator = rest.pop("generator", None)
        if seeds is not None:
            data["seeds"] = list(seeds)
        elif isinstance(generator, torch.Generator):
            data["seeds"] = [generator.initial_seed()]
        rest.pop("output_type", None)
        rest.pop("return_dict", None)
        data["call_kwargs"] = rest
        return cls.from_dict({**data, **fields})

    # -- checks against a pipeline --------------------------------------------------------------------------------
    def check(self, pipe: Any) -> None:
        """Raise `WorkloadError` if ``pipe`` cannot run this workload: wrong dtype, or an argument its call lacks."""
        from autoaccel.methods._pipeline import denoiser

        if self.dtype is not None:
            actual = str(denoiser(pipe).dtype).removeprefix("torch.")
            if actual != self.dtype:
                raise WorkloadError(
                    f"dtype: the workload is for {self.dtype} but the pipeline's denoiser is {actual}; "
                    f"load the pipeline with torch_dtype=torch.{self.dtype} or set the workload's dtype"
                )
        params = inspect.signature(pipe.__call__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        needed = list(self.call_kwargs)
        needed += [
            k for k in ("height", "width", "num_inference_steps", "guidance_scale") if getattr(self, k) is not None
        ]
        needed += ["prompt"] if self.prompts is not None else ["class_labels"] if self.class_labels is not None else []
        for key in needed:
            if key not in params:
                raise WorkloadError(f"{type(pipe).__name__}.__call__ has no argument {key!r} (from the workload)")


def _describe(error: ValidationError, source: str) -> str:
    err = error.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "workload"
    return f"{source}: {loc}: {err['msg'].removeprefix('Value error, ')}"


def _sha256_json(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

"""The recipe: a small, versioned JSON naming methods and their settings. It is the contract between all layers.

A complete recipe needs only ``schema_version`` and ``methods``::

    {"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": 0.1}}]}

Loading never executes code: method names resolve only through `autoaccel.methods`, params are validated by each
method's pydantic config, and every failure is a `RecipeError` naming the offending field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from ..errors import NotApplicableError, RecipeError
from ..methods import CompositeHandle, MethodConfig, apply_methods, check_combination, check_methods, get

SCHEMA_VERSION = 1
MAX_RECIPE_BYTES = 1_000_000


class MethodEntry(BaseModel):
    """One method of a recipe: its registry name and params (validated against the method's config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=64)
    params: dict[str, JsonValue] = Field(default_factory=dict)

    def config(self) -> MethodConfig:
        return get(self.name).config.model_validate(self.params)


class Recipe(BaseModel):
    """An acceleration recipe (schema version 1). Only ``schema_version`` and ``methods`` are required.

    Args:
        schema_version: Always 1 for this schema; other versions are refused.
        methods: Ordered methods; they are applied in each method's stage order, removed in reverse.
        model_id / revision / pipeline_class / dtype: What the recipe was made for.
        workload: What was measured (resolution, steps, guidance, prompt set, ...), JSON values.
        budget: The quality budget the recipe was validated against, e.g. ``"lpips<0.1"``.
        metrics: Validated measurements (speedup, quality, confidence intervals), JSON values.
        hardware: Where it was measured (GPU/CPU name, memory, torch and diffusers versions).
        provenance: How it was made (search study, trials, date, autoaccel version).

    Example:
        >>> from autoaccel import Recipe
        >>> r = Recipe.from_json('{"schema_version": 1, "methods": [{"name": "block_cache", "params": {}}]}')
        >>> handle = r.apply(pipe)   # ... pipe(...) runs accelerated ...
        >>> handle.remove()          # back to the exact original pipeline
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    methods: list[MethodEntry] = Field(max_length=32)
    model_id: str | None = None
    revision: str | None = None
    pipeline_class: str | None = None
    dtype: str | None = None
    workload: dict[str, JsonValue] | None = None
    budget: str | None = None
    metrics: dict[str, JsonValue] | None = None
    hardware: dict[str, JsonValue] | None = None
    provenance: dict[str, JsonValue] | None = None

    def model_post_init(self, _context: Any) -> None:
        for i, entry in enumerate(self.methods):
            try:
                entry.config()
            except RecipeError as e:
                raise RecipeError(e.message, field=f"methods.{i}.name") from None
            except ValidationError as e:
                err = e.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                where = f"methods.{i}.params" + (f".{loc}" if loc else "")
                raise RecipeError(f"{err['msg']} (method {entry.name!r})", field=where) from None
        check_combination([m.name for m in self.methods])

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> Recipe:
        """Validate a parsed JSON object; raises `RecipeError` naming the field."""
        if not isinstance(data, dict):
            raise RecipeError(f"a recipe must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if "schema_version" not in data:
            raise RecipeError("missing; this library reads schema version 1", field="schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise RecipeError(
                f"unsupported schema version {version!r}; this library reads version {SCHEMA_VERSION} "
                "(upgrade autoaccel to read newer recipes)",
                field="schema_version",
            )
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            original = (err.get("ctx") or {}).get("error")
            if isinstance(original, RecipeError):  # raised by our own checks, wrapped by pydantic
                raise RecipeError(original.message, field=original.field) from None
            loc = ".".join(str(p) for p in err["loc"])
            raise RecipeError(err["msg"], field=loc or None) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Recipe:
        if len(text) > MAX_RECIPE_BYTES:
            raise RecipeError(f"recipe is {len(text)} bytes; the limit is {MAX_RECIPE_BYTES}")
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise RecipeError(f"not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise RecipeError(f"cannot read recipe file {path}: {e.strerror}") from None
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(f"recipe file {path} is {size} bytes; the limit is {MAX_RECIPE_BYTES}")
        return cls.from_json(path.read_bytes())

    @classmethod
    def coerce(cls, recipe: Recipe | dict | str | Path) -> Recipe:
        """A `Recipe` from a Recipe, a dict, a JSON string or a path to a JSON file."""
        if isinstance(recipe, Recipe):
            return recipe
        if isinstance(recipe, dict):
            return cls.from_dict(recipe)
        if isinstance(recipe, str) and recipe.lstrip().startswith("{"):
            return cls.from_json(recipe)
        if isinstance(recipe, (str, Path)):
            return cls.load(recipe)
        raise RecipeError(f"expected a Recipe, dict, JSON string or path, got {type(recipe).__name__}")

    @classmethod
    def from_pretrained(
        cls,
        repo_id: str,
        revision: str | None = None,
        *,
        expected_base_model: str | None = None,
        allow_base_model_mismatch: bool = False,
        **kwargs: Any,
    ) -> Recipe:
        """Download (cached) and validate the recipe of a Hub repository; see `autoaccel.hub.load_recipe`.

        Only ``autoaccel_recipe.json`` is read; ``expected_base_model`` refuses a recipe made for another model.
        ``kwargs``: ``token``, ``cache_dir``, ``api``.
        """
        from ..hub import load_recipe

        return load_recipe(
            repo_id,
            revision,
            expected_base_model=expected_base_model,
            allow_base_model_mismatch=allow_base_model_mismatch,
            **kwargs,
        )

    def push_to_hub(
        self, repo_id: str, token: str | None = None, private: bool = False, revision: str | None = None, **kwargs: Any
    ) -> Any:
        """Publish to a lightweight Hub repository (recipe JSON, model card, Pareto plot); see
        `autoaccel.hub.push_recipe`. ``kwargs``: ``pareto_plot``, ``commit_message``, ``api``. Returns the commit."""
        from ..hub import push_recipe

        return push_recipe(self, repo_id, token=token, private=private, revision=revision, **kwargs)

    # -- serialisation ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    # -- use ----------------------------------------------------------------------------------------------------
    def configs(self) -> list[tuple[str, MethodConfig]]:
        return [(m.name, m.config()) for m in self.methods]

    def check(self, pipe: Any) -> None:
        """Raise `RecipeError` if `apply` would refuse this recipe on ``pipe`` (nothing is changed)."""
        try:
            check_methods(pipe, self.configs())
        except NotApplicableError as e:
            raise RecipeError(str(e), field="methods") from e

    def apply(self, pipe: Any) -> CompositeHandle:
        """Apply all methods to ``pipe`` (all or nothing) and set ``pipe.autoaccel_recipe``.

        Raises:
            RecipeError: a method does not apply to this pipeline, or clashes with methods already applied.
        """
        try:
            handle = apply_methods(pipe, self.configs())
        except NotApplicableError as e:
            raise RecipeError(str(e), field="methods") from e
        previous = getattr(pipe, "autoaccel_recipe", None)
        pipe.autoaccel_recipe = self

        forget = handle._on_remove

        def restore() -> None:
            if forget is not None:
                forget()
            pipe.autoaccel_recipe = previous

        handle._on_remove = restore
        return handle


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a recipe")

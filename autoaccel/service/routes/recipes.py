"""``/v1/recipes``: the best recipe for a model, hardware and budget; get, list, publish and delete recipes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...aliases import canonical_id
from ...recipes import Recipe
from ..deps import AdminToken, DBDep, WriteToken
from ..errors import error
from ..schemas import NO_NUL, BestRecipePublic, ErrorBody, ModelName, RecipePublic, RecipesPublic, Revision, Text
from ._params import Fingerprint, Limit, Offset, RowId

router = APIRouter(prefix="/recipes", tags=["recipes"])
SEARCH_HINT = "submit a search: POST /v1/searches"
Source = Literal["manual", "import", "hub", "search"]


@router.get(
    "/best",
    response_model=BestRecipePublic,
    responses={404: {"model": ErrorBody, "description": "No stored recipe meets the budget."}},
)
def best_recipe(
    db: DBDep,
    model: Annotated[ModelName, Query(description="Hub id or alias of the model.")],
    hardware: Annotated[Text, Query(description="Device key (e.g. nvidia-h100-80gb-hbm3) or hardware fingerprint.")],
    budget: Annotated[str | None, Query(max_length=1024, pattern=NO_NUL, examples=["p90(lpips)<0.1"])] = None,
    revision: Annotated[Revision | None, Query()] = None,
    workload: Fingerprint | None = None,
    arch_class: Annotated[
        Text | None,
        Query(
            description="Your device's architecture class (hopper, ampere, ...): falls back to recipes measured on "
            "another device of that class when the database does not know your device."
        ),
    ] = None,
) -> Response:
    """The fastest validated recipe that meets ``budget`` on this hardware (then the same GPU with other software,
    then the same architecture class; ``fallback`` says which). 404 when none does."""
    model_id = canonical_id(model)
    match = db.best_recipe(model_id, revision, hardware, workload, budget)
    if match is None and arch_class:
        device = {"key": hardware, "name": hardware, "arch_class": arch_class}
        match = db.best_recipe(model_id, revision, device, workload, budget)
    if match is None:
        what = f"meets {budget}" if budget else "is stored"
        where = f"{model_id}" + (f"@{revision}" if revision else "") + f" on {hardware}"
        if workload:
            where += f" for workload {workload[:12]}"
        return error(status.HTTP_404_NOT_FOUND, f"no recipe {what} for {where}", hint=SEARCH_HINT)
    return JSONResponse(
        {
            "recipe_id": match.recipe_id,
            "fallback": match.fallback,
            "speedup": match.speedup,
            "hardware_key": match.hardware_key,
            "hardware_name": match.hardware_name,
            "recipe": match.recipe.to_dict(),
        }
    )


@router.get("", response_model=RecipesPublic)
def list_recipes(
    db: DBDep,
    model: Annotated[ModelName | None, Query(description="Hub id or alias.")] = None,
    revision: Annotated[Revision | None, Query()] = None,
    hardware: Annotated[Text | None, Query(description="Device key.")] = None,
    hardware_name: Annotated[Text | None, Query(description="Device name, any case.")] = None,
    arch_class: Annotated[Text | None, Query(description="e.g. hopper, ampere, cpu-x86_64.")] = None,
    workload: Fingerprint | None = None,
    source: Source | None = None,
    validated: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> RecipesPublic:
    """Stored recipes matching every filter, newest first."""
    infos, total = db.list_recipes(
        model_id=canonical_id(model) if model else None,
        revision=revision,
        hardware_key=hardware,
        hardware_name=hardware_name,
        arch_class=arch_class,
        workload_fingerprint=workload,
        validated=validated,
        source=source,
        limit=limit,
        offset=offset,
    )
    return RecipesPublic(data=[RecipePublic.model_validate(i) for i in infos], count=total)


@router.get("/{recipe_id}", response_model=Recipe, responses={404: {"model": ErrorBody}})
def get_recipe(db: DBDep, recipe_id: RowId) -> Response:
    """The recipe JSON itself, ready for ``Recipe.from_json``."""
    return JSONResponse(db.get_recipe(recipe_id).to_dict())


@router.get("/{recipe_id}/info", responses={404: {"model": ErrorBody}})
def get_recipe_info(db: DBDep, recipe_id: RowId) -> RecipePublic:
    """Where a recipe was measured, its speedup and validated quality."""
    return RecipePublic.model_validate(db.get_recipe_info(recipe_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RecipePublic,
    responses={401: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A recipe file. It must name its model_id, its hardware and metrics.speedup.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Recipe"}}},
        }
    },
)
async def publish_recipe(
    request: Request, db: DBDep, token: WriteToken, source: Source = "manual", validated: bool = True
) -> Response:
    """Publishes a recipe file, validated exactly as ``Recipe.from_json`` validates a file (needs a token)."""
    recipe = Recipe.from_json(await request.body())
    recipe_id = await run_in_threadpool(db.add_recipe, recipe, source=source, validated=validated)
    info = await run_in_threadpool(db.get_recipe_info, recipe_id)
    body = RecipePublic.model_validate(info).model_dump(mode="json")
    return JSONResponse(body, status.HTTP_201_CREATED, headers={"Location": f"{request.url.path}/{recipe_id}"})


@router.delete(
    "/{recipe_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)
def delete_recipe(db: DBDep, token: AdminToken, recipe_id: RowId) -> Response:
    """Deletes a recipe (needs an admin token)."""
    db.delete_recipe(recipe_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

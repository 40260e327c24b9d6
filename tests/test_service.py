"""The REST service on SQLite and a real PostgreSQL: recipes, searches, catalog, tokens, bad input, schemathesis."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from sqlalchemy import select

from autoaccel.db import DatabaseError, RecipeDB, head_revision
from autoaccel.db.models import ApiToken
from autoaccel.recipes import Recipe
from autoaccel.service import Settings, create_app
from autoaccel.service.security import create_token, hash_token
from tests._postgres import postgres_server, postgres_url  # noqa: F401

H100 = {
    "key": "nvidia-h100-80gb-hbm3",
    "name": "NVIDIA H100 80GB HBM3",
    "device_kind": "cuda",
    "arch_class": "hopper",
    "driver_version": "550.54",
}
A100 = {"key": "nvidia-a100-sxm4-80gb", "name": "NVIDIA A100-SXM4-80GB", "device_kind": "cuda", "arch_class": "ampere"}
MODEL = "org/fashion-flux"
TINY_WORKLOAD = {
    "prompts": ["a red cat", "a blue dog"],
    "seeds": [0],
    "num_inference_steps": 4,
    "height": 32,
    "width": 32,
}


def make_recipe(threshold: float = 0.1, **fields) -> Recipe:
    data = {"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": threshold}}]}
    return Recipe.from_dict({**data, "model_id": MODEL, **fields})


def quality(p90: float) -> dict:
    return {"lpips": {"mean": p90 / 2, "p90": p90, "max": p90 + 0.05}}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> Iterator[RecipeDB]:
    url = (
        f"sqlite:///{tmp_path / 'service.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    with RecipeDB(url) as recipe_db:
        yield recipe_db


@pytest.fixture
def client(db: RecipeDB) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), db=db), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def tokens(db: RecipeDB) -> dict[str, dict[str, str]]:
    """Authorization headers: a writer, an admin, a revoked token and a wrong one."""
    writer, _ = create_token(db, "ci-writer")
    admin, _ = create_token(db, "ops", admin=True)
    revoked, _ = create_token(db, "old-laptop")
    db.revoke_token("old-laptop")
    bearer = {"writer": writer, "admin": admin, "revoked": revoked, "wrong": writer[:-4] + "AAAA"}
    return {name: {"Authorization": f"Bearer {token}"} for name, token in bearer.items()}


@pytest.fixture
def catalogue(db: RecipeDB) -> dict[str, int]:
    return {
        "h100_fast": db.add_recipe(make_recipe(0.2), hardware=H100, speedup=2.5, metrics=quality(0.12)),
        "h100_safe": db.add_recipe(make_recipe(0.05), hardware=H100, speedup=1.6, metrics=quality(0.04)),
        "a100": db.add_recipe(make_recipe(0.1), hardware=A100, speedup=1.9, metrics=quality(0.05)),
    }


# -- health, docs ---------------------------------------------------------------------------------------------------
def test_health_ready_and_openapi(client: TestClient, db: RecipeDB):
    assert client.get("/v1/health").json()["status"] == "ok"
    ready = client.get("/v1/ready").json()
    assert ready == {"status": "ready", "database": db.engine.dialect.name, "schema_revision": head_revision()}
    spec = client.get("/openapi.json").json()
    assert {"/v1/recipes/best", "/v1/recipes", "/v1/searches", "/v1/searches/{job_id}/cancel", "/v1/models"} <= set(
        spec["paths"]
    )
    assert spec["paths"]["/v1/recipes"]["post"]["security"] == [{"token": []}]
    assert "security" not in spec["paths"]["/v1/recipes/best"]["get"]  # reads are open
    assert client.get("/docs").status_code == 200


# -- recipes --------------------------------------------------------------------------------------------------------
def test_best_recipe_with_budget_fallback_and_404(client: TestClient, catalogue):
    query = {"model": MODEL, "hardware": H100["key"], "budget": "p90(lpips)<0.1"}
    best = client.get("/v1/recipes/best", params=query).json()
    assert (best["recipe_id"], best["fallback"], best["speedup"]) == (catalogue["h100_safe"], "exact", 1.6)
    assert Recipe.from_dict(best["recipe"]) == make_recipe(0.05)
    looser = client.get("/v1/recipes/best", params={**query, "budget": "p90(lpips)<0.2"}).json()
    assert looser["recipe_id"] == catalogue["h100_fast"]

    h200 = {**query, "hardware": "nvidia-h200", "arch_class": "ampere"}  # an unknown device: same-arch fallback
    assert client.get("/v1/recipes/best", params=h200).json()["fallback"] == "same_arch"

    missing = client.get("/v1/recipes/best", params={**query, "budget": "p90(lpips)<0.01"})
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": f"no recipe meets p90(lpips)<0.01 for {MODEL} on {H100['key']}",
        "hint": "submit a search: POST /v1/searches",
    }
    bad = client.get("/v1/recipes/best", params={**query, "budget": "lpips<<0.1"})
    assert bad.status_code == 422 and "expected a number" in bad.json()["detail"]
    no_model = client.get("/v1/recipes/best", params={"hardware": "x"})
    assert no_model.status_code == 422 and no_model.json()["errors"][0]["loc"] == ["query", "model"]


def test_aliases_resolve_to_the_hub_id(client: TestClient, db: RecipeDB):
    rid = db.add_recipe(
        make_recipe(model_id="autoaccel/fashion-flux"), hardware=H100, speedup=1.5, metrics=quality(0.05)
    )
    best = client.get("/v1/recipes/best", params={"model": "fashion-flux", "hardware": H100["key"]})
    assert best.json()["recipe_id"] == rid


def test_get_and_list_recipes(client: TestClient, catalogue):
    rid = catalogue["a100"]
    got = client.get(f"/v1/recipes/{rid}")
    assert got.status_code == 200 and Recipe.from_json(got.text) == make_recipe(0.1)
    info = client.get(f"/v1/recipes/{rid}/info").json()
    assert (info["id"], info["hardware_key"], info["speedup"], info["arch_class"]) == (rid, A100["key"], 1.9, "ampere")
    assert info["quality"] == quality(0.05)

    page = client.get("/v1/recipes", params={"model": MODEL, "limit": 2}).json()
    assert page["count"] == 3 and [r["id"] for r in page["data"]] == [catalogue["a100"], catalogue["h100_safe"]]
    rest = client.get("/v1/recipes", params={"model": MODEL, "limit": 2, "offset": 2}).json()
    assert [r["id"] for r in rest["data"]] == [catalogue["h100_fast"]]
    hopper = client.get("/v1/recipes", params={"arch_class": "hopper"}).json()
    assert sorted(r["id"] for r in hopper["data"]) == sorted([catalogue["h100_fast"], catalogue["h100_safe"]])
    assert client.get("/v1/recipes", params={"model": "other/model"}).json() == {"data": [], "count": 0}

    missing = client.get("/v1/recipes/999999")
    assert missing.status_code == 404 and missing.json() == {"detail": "no recipe with id 999999"}
    assert client.get("/v1/recipes", params={"limit": 0}).status_code == 422


def test_publish_recipe_validated_like_a_file(client: TestClient, tokens):
    recipe = make_recipe(0.07, hardware=H100, metrics={"speedup": 1.8, "lpips": {"mean": 0.03, "p90": 0.05}})
    published = client.post("/v1/recipes", content=recipe.to_json(), headers=tokens["writer"])
    assert published.status_code == 201, published.text
    body = published.json()
    assert published.headers["location"] == f"/v1/recipes/{body['id']}"
    assert (body["source"], body["speedup"], body["hardware_key"], body["validated"]) == (
        "manual",
        1.8,
        H100["key"],
        True,
    )
    assert Recipe.from_json(client.get(published.headers["location"]).text) == recipe
    best = client.get("/v1/recipes/best", params={"model": MODEL, "hardware": H100["key"], "budget": "p90(lpips)<0.06"})
    assert best.json()["recipe_id"] == body["id"]

    def publish(data) -> dict:
        text = data if isinstance(data, str) else json.dumps(data)
        response = client.post("/v1/recipes", content=text, headers=tokens["writer"])
        assert response.status_code == 422, response.text
        return response.json()

    good = recipe.to_dict()
    unknown = publish({**good, "methods": [{"name": "warp_drive", "params": {}}]})
    assert "methods.0.name: unknown method 'warp_drive'" in unknown["detail"]
    bad_param = publish({**good, "methods": [{"name": "block_cache", "params": {"threshold": "high"}}]})
    assert "methods.0.params.threshold" in bad_param["detail"]
    assert publish({**good, "schema_version": 2})["field"] == "schema_version"
    assert publish({**good, "methods": "all"})["field"] == "methods"
    assert "speedup" in publish({**good, "metrics": {"lpips": {"p90": 0.05}}})["detail"]
    assert "NaN" in publish(recipe.to_json().replace("1.8", "NaN"))["detail"]
    assert "not valid JSON" in publish("{not json")["detail"]
    assert client.get("/v1/recipes").json()["count"] == 1


def test_tokens_missing_wrong_revoked_and_admin(client: TestClient, db: RecipeDB, tokens, catalogue):
    body = make_recipe(hardware=H100, metrics={"speedup": 1.2}).to_json()
    missing = client.post("/v1/recipes", content=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert "autoaccel tokens create" in missing.json()["detail"]
    wrong = client.post("/v1/recipes", content=body, headers=tokens["wrong"])
    assert wrong.status_code == 401 and wrong.json() == {"detail": "invalid token"}
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    revoked = client.post("/v1/recipes", content=body, headers=tokens["revoked"])
    assert revoked.status_code == 401 and "'old-laptop' was revoked" in revoked.json()["detail"]
    basic = client.post("/v1/recipes", content=body, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401

    rid = catalogue["a100"]
    forbidden = client.delete(f"/v1/recipes/{rid}", headers=tokens["writer"])
    assert forbidden.status_code == 403 and "not an admin token" in forbidden.json()["detail"]
    assert client.delete(f"/v1/recipes/{rid}").status_code == 401
    assert client.delete(f"/v1/recipes/{rid}", headers=tokens["admin"]).status_code == 204
    assert client.get(f"/v1/recipes/{rid}").status_code == 404
    assert client.delete(f"/v1/recipes/{rid}", headers=tokens["admin"]).status_code == 404

    secret = tokens["writer"]["Authorization"].removeprefix("Bearer ")
    with db.session() as s:
        rows = s.scalars(select(ApiToken)).all()
    assert {r.name for r in rows} == {"ci-writer", "ops", "old-laptop"}
    stored = next(r for r in rows if r.name == "ci-writer")
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest() == hash_token(secret)
    assert all(secret not in (r.token_hash, r.name) for r in rows)  # only the hash is stored


# -- searches -------------------------------------------------------------------------------------------------------
def test_submit_get_list_and_cancel_searches(client: TestClient, db: RecipeDB, tokens):
    request = {"model": "tiny:flux", "budget": "lpips < 0.1", "workload": TINY_WORKLOAD, "n_trials": 3}
    assert client.post("/v1/searches", json=request).status_code == 401
    submitted = client.post("/v1/searches", json=request, headers=tokens["writer"])
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()
    assert (job["status"], job["budget"], job["n_trials"], job["submitted_by"]) == (
        "queued",
        "lpips<0.1",
        3,
        "ci-writer",
    )
    assert job["workload"]["prompts"] == TINY_WORKLOAD["prompts"] and job["progress"]["trials_done"] == 0
    assert client.get(submitted.headers["location"]).json()["id"] == job["id"]

    flux = client.post("/v1/searches", json={**request, "model": "flux-dev"}, headers=tokens["writer"]).json()
    assert flux["model_id"] == "black-forest-labs/FLUX.1-dev"
    listed = client.get("/v1/searches", params={"status": "queued"}).json()
    assert listed["count"] == 2 and [j["id"] for j in listed["data"]] == [flux["id"], job["id"]]
    assert client.get("/v1/searches", params={"model": "flux-dev"}).json()["count"] == 1

    cancelled = client.post(f"/v1/searches/{job['id']}/cancel", headers=tokens["writer"])
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/v1/searches/{job['id']}/cancel", headers=tokens["writer"])
    assert again.status_code == 409 and "already finished (cancelled)" in again.json()["detail"]
    assert client.post(f"/v1/searches/{flux['id']}/cancel").status_code == 401
    assert client.get("/v1/searches/424242").status_code == 404

    claimed = db.claim_job("w1", lease_s=60)  # the flux job, now running: cancellation is requested
    running = client.post(f"/v1/searches/{claimed.id}/cancel", headers=tokens["writer"]).json()
    assert (running["status"], running["cancel_requested"]) == ("running", True)
    assert db.heartbeat_job(claimed.id, "w1", lease_s=60) == "cancel"


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ({"budget": "lpips <"}, "budget", "expected a number"),
        ({"budget": "sharpness<3"}, "budget", "sharpness"),
        ({"exclude": ["warp_drive"]}, "exclude", "unknown methods ['warp_drive']"),
        ({"workload": {"prompts": "/etc/passwd"}}, "workload", "files are not read"),
        ({"workload": {"prompts": ["a"], "steps": 4}}, "workload", "steps"),
        ({"n_trials": 0}, "n_trials", "greater than or equal to 1"),
        ({"model": "../../etc"}, "model", "pattern"),
        ({"shell": "rm -rf /"}, "shell", "Extra inputs are not permitted"),
    ],
)
def test_bad_search_requests_name_the_field(client: TestClient, tokens, change, where, message):
    request = {"model": "tiny:flux", "budget": "lpips<0.1", **change}
    response = client.post("/v1/searches", json=request, headers=tokens["writer"])
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"][0]["loc"] == ["body", where] and message in body["detail"]
    assert client.get("/v1/searches").json()["count"] == 0


# -- catalog --------------------------------------------------------------------------------------------------------
def test_models_and_hardware(client: TestClient, db: RecipeDB, catalogue):
    db.upsert_model("org/other", "v2")
    models = client.get("/v1/models").json()
    assert models["count"] == 2
    assert [(m["model_id"], m["revision"], m["recipes"]) for m in models["data"]] == [
        (MODEL, "main", 3),
        ("org/other", "v2", 0),
    ]
    assert client.get("/v1/models", params={"model": "org/other"}).json()["count"] == 1
    hardware = client.get("/v1/hardware").json()
    assert [(h["key"], h["arch_class"], h["recipes"]) for h in hardware["data"]] == [
        (A100["key"], "ampere", 1),
        (H100["key"], "hopper", 2),
    ]
    assert client.get("/v1/hardware", params={"arch_class": "hopper"}).json()["count"] == 1


# -- bad input, errors ----------------------------------------------------------------------------------------------
def test_request_bodies_are_capped(db: RecipeDB, tokens):
    app = create_app(Settings(max_body_bytes=4096), db=db)
    with TestClient(app) as client:
        big = client.post("/v1/recipes", content=b"x" * 5000, headers=tokens["writer"])
        assert big.status_code == 413 and "limit of 4096 bytes" in big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the stream itself is counted
            yield from [b"y" * 1000] * 5

        streamed = client.post("/v1/recipes", content=chunks(), headers=tokens["writer"])
        assert streamed.status_code == 413
        small = client.post("/v1/recipes", content=b"{}", headers=tokens["writer"])
        assert small.status_code == 422  # under the cap: validated as usual


def test_errors_are_json_without_tracebacks(db: RecipeDB, client: TestClient, monkeypatch):
    assert client.get("/v1/nowhere").json() == {"detail": "Not Found"}
    assert client.put("/v1/recipes").status_code == 405

    def crash(*args, **kwargs):
        raise RuntimeError("secret internals /srv/app.py line 3")

    monkeypatch.setattr(db, "best_recipe", crash)
    failed = client.get("/v1/recipes/best", params={"model": MODEL, "hardware": "x"})
    assert failed.status_code == 500 and failed.json() == {"detail": "internal server error"}

    def down(*args, **kwargs):
        raise DatabaseError("database error on postgresql://u:***@db:5432/x: connection refused")

    monkeypatch.setattr(db, "list_recipes", down)
    unavailable = client.get("/v1/recipes")
    assert unavailable.status_code == 503
    assert unavailable.json()["detail"] == "the recipe database is unavailable; try again later"


# -- schemathesis ---------------------------------------------------------------------------------------------------
def _fuzz(operation, mode: str, headers: dict[str, str], statuses: list[int]) -> None:
    from schemathesis.generation import GenerationMode

    @given(case=operation.as_strategy(GenerationMode(mode)))
    @settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def no_server_error(case) -> None:
        response = case.call(headers=headers)
        statuses.append(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"

    try:
        no_server_error()
    except Unsatisfiable:  # nothing to violate, e.g. GET /v1/health in negative mode
        assert mode == "negative"


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_never_get_a_server_error(db: RecipeDB, tokens, catalogue, mode):
    """Every operation of the OpenAPI spec, with schema-conforming (positive) or violating (negative) requests."""
    schemathesis = pytest.importorskip("schemathesis")

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(), db=db))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 14
    statuses: list[int] = []
    for operation in operations:
        _fuzz(operation, mode, tokens["admin"] if operation.method.upper() != "GET" else {}, statuses)
    assert len(statuses) > 150
    assert any(s < 300 for s in statuses) if mode == "positive" else statuses.count(422) > 100

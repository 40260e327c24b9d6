"""Hub integration: the real huggingface_hub client against the Hub-compatible test server of `tests._hub_server`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard, constants

from autoaccel.errors import RecipeError
from autoaccel.hub import (
    PARETO_FILENAME,
    RECIPE_FILENAME,
    BaseModelMismatchError,
    HubError,
    budget_violations,
    cli_pull,
    cli_push,
    find_recipes,
    hardware_key,
    looks_like_repo_id,
    parse_metrics,
    resolve_from_hub,
)
from autoaccel.recipes import Recipe

from ._hub_server import HubServer

FLUX = "black-forest-labs/FLUX.1-dev"
SD3 = "stabilityai/stable-diffusion-3-medium-diffusers"
H100 = {"device_kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "arch_class": "hopper", "torch_version": "2.13.0"}
A100 = {"device_kind": "cuda", "name": "NVIDIA A100-SXM4-80GB", "arch_class": "ampere", "torch_version": "2.13.0"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
TOKENS = {"hf_alice": "alice", "hf_bob": "bob"}


def make_recipe(model_id: str = FLUX, hardware: dict | None = None, speedup: float = 2.1, lpips=None) -> Recipe:
    lpips = [0.04, 0.05, 0.06, 0.05] if lpips is None else lpips
    return Recipe.from_dict(
        {
            "schema_version": 1,
            "methods": [
                {"name": "steps", "params": {"num_inference_steps": 20}},
                {"name": "block_cache", "params": {"threshold": 0.08}},
            ],
            "model_id": model_id,
            "revision": "0ef5fff789c832c5c7f4e127f94c8b54bbcced44",
            "pipeline_class": "FluxPipeline" if "FLUX" in model_id else "StableDiffusion3Pipeline",
            "dtype": "bfloat16",
            "workload": {"height": 1024, "width": 1024, "num_inference_steps": 28, "prompt_set": "parti-4"},
            "budget": "p90(lpips)<0.15",
            "metrics": {
                "speedup": {"median": speedup, "ci95": [speedup - 0.1, speedup + 0.1]},
                "quality": {"lpips": {"mean": sum(lpips) / len(lpips), "ci95": [0.04, 0.06], "per_image": lpips}},
            },
            "hardware": hardware or H100,
            "provenance": {"study": "flux-h100", "trials": 64},
        }
    )


@pytest.fixture(scope="module")
def server():
    with HubServer(tokens=TOKENS) as hub:
        yield hub


@pytest.fixture
def hub(server, monkeypatch, tmp_path):
    """A clean server, online mode, no ambient token, and no retry sleeps (unreachable-server tests stay fast)."""
    import huggingface_hub.utils._http as hf_http

    server.reset()
    for name in ("HF_HUB_OFFLINE", "AUTOACCEL_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(hf_http.time, "sleep", lambda seconds: None)
    return server


@pytest.fixture
def alice(hub):
    return HfApi(endpoint=hub.url, token="hf_alice")


@pytest.fixture
def anon(hub):
    return HfApi(endpoint=hub.url)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hf-cache"


@pytest.fixture
def plot(tmp_path):
    path = tmp_path / "pareto.png"
    path.write_bytes(PNG)
    return path


def _fetched(hub: HubServer, repo_id: str) -> list[tuple[str, str]]:
    return [(m, p) for m, p in hub.requests if f"/{repo_id}/resolve/" in p]


# -- publish and load ---------------------------------------------------------------------------------------------
def test_push_then_pull_gives_identical_recipe(hub, alice, anon, cache, plot):
    recipe = make_recipe()
    commit = recipe.push_to_hub("alice/flux-h100", pareto_plot=plot, api=alice)
    assert commit.oid == hub.repos["alice/flux-h100"].branches["main"]
    files = hub.files("alice/flux-h100")
    assert set(files) == {".gitattributes", RECIPE_FILENAME, "README.md", PARETO_FILENAME}
    assert files[PARETO_FILENAME] == PNG
    assert json.loads(files[RECIPE_FILENAME]) == recipe.to_dict()

    again = recipe.push_to_hub("alice/flux-h100", pareto_plot=plot, api=alice)  # nothing changed: no new commit
    assert again.oid == commit.oid and len(hub.repos["alice/flux-h100"].commits) == 2
    pulled = Recipe.from_pretrained("alice/flux-h100", expected_base_model=FLUX, cache_dir=cache, api=anon)
    assert pulled == recipe
    assert pulled.to_json() == recipe.to_json()


def test_card_metadata_parses_with_modelcard_loader(hub, alice, anon, cache, plot):
    make_recipe().push_to_hub("alice/flux-h100", pareto_plot=plot, api=alice)
    card = ModelCard.load(anon.hf_hub_download("alice/flux-h100", "README.md", cache_dir=cache))
    data = card.data
    assert data.base_model == FLUX
    assert data.library_name == "autoaccel"
    assert data.tags == ["autoaccel", "acceleration-recipe", "nvidia-h100-80gb-hbm3", "hopper", "flux"]
    by_type = {r.metric_type: r for r in data.eval_results}
    assert by_type["speedup"].metric_value == pytest.approx(2.1)
    assert by_type["lpips"].metric_value == pytest.approx(0.05)
    assert by_type["lpips"].task_type == "text-to-image" and by_type["lpips"].dataset_name == "parti-4"
    summary = data.to_dict()["autoaccel"]
    assert summary["base_model_revision"] == "0ef5fff789c832c5c7f4e127f94c8b54bbcced44"
    assert summary["speedup_ci95"] == pytest.approx([2.0, 2.2])
    assert summary["hardware"] == "nvidia-h100-80gb-hbm3"
    text = card.text
    assert 'AutoAccel.from_pretrained("black-forest-labs/FLUX.1-dev", recipe="alice/flux-h100")' in text
    assert "**2.1x** (95% confidence interval [2, 2.2])" in text
    assert "NVIDIA H100 80GB HBM3" in text and "PyTorch 2.13.0" in text
    assert "![Speed/quality Pareto front of the search](pareto.png)" in text
    assert 'budget="p90(lpips)<0.15", search=True' in text
    assert "**block_cache** (threshold=0.08)" in text
    # The Hub indexes the card: tags, library and base model are searchable.
    tags = anon.model_info("alice/flux-h100").tags
    assert {"autoaccel", "acceleration-recipe", "flux", f"base_model:{FLUX}"} <= set(tags)


def test_push_updates_the_repo_and_drops_a_stale_plot(hub, alice, anon, cache, plot):
    make_recipe().push_to_hub("alice/flux-h100", pareto_plot=plot, api=alice)
    newer = make_recipe(speedup=2.4)
    newer.push_to_hub("alice/flux-h100", api=alice)
    files = hub.files("alice/flux-h100")
    assert PARETO_FILENAME not in files
    assert "pareto.png" not in files["README.md"].decode()
    assert Recipe.from_pretrained("alice/flux-h100", cache_dir=cache, api=anon) == newer
    assert len(hub.repos["alice/flux-h100"].commits) == 3  # .gitattributes, first push, second push


def test_push_to_a_branch(hub, alice, anon, cache):
    make_recipe().push_to_hub("alice/flux-h100", revision="h100-strict", api=alice)
    assert RECIPE_FILENAME not in hub.files("alice/flux-h100", "main")
    assert Recipe.from_pretrained("alice/flux-h100", "h100-strict", cache_dir=cache, api=anon) == make_recipe()
    with pytest.raises(HubError, match=f"holds no {RECIPE_FILENAME}"):
        Recipe.from_pretrained("alice/flux-h100", cache_dir=cache, api=anon)


def test_push_refuses_a_repo_holding_other_files(hub, alice):
    hub.put_files("alice/flux-weights", {"model.safetensors": b"weights"}, owner="alice")
    before = len(hub.repos["alice/flux-weights"].commits)
    with pytest.raises(HubError, match=r"model\.safetensors.*own repository"):
        make_recipe().push_to_hub("alice/flux-weights", api=alice)
    assert len(hub.repos["alice/flux-weights"].commits) == before


def test_push_needs_a_model_id_and_a_png_plot(hub, alice, tmp_path):
    with pytest.raises(RecipeError, match="model_id"):
        Recipe.from_dict({"schema_version": 1, "methods": []}).push_to_hub("alice/x", api=alice)
    fake = tmp_path / "plot.png"
    fake.write_bytes(b"GIF89a not a png")
    with pytest.raises(HubError, match="not a PNG"):
        make_recipe().push_to_hub("alice/x", pareto_plot=fake, api=alice)
    assert hub.repos == {}


def test_private_repo_needs_the_owners_token(hub, alice, anon, cache):
    make_recipe().push_to_hub("alice/secret", private=True, api=alice)
    with pytest.raises(HubError, match="not found"):
        Recipe.from_pretrained("alice/secret", cache_dir=cache, api=anon)
    assert find_recipes(FLUX, api=anon, cache_dir=cache) == []
    assert Recipe.from_pretrained("alice/secret", cache_dir=cache, api=alice) == make_recipe()
    assert [r.repo_id for r in find_recipes(FLUX, api=alice, cache_dir=cache)] == ["alice/secret"]


# -- safety -------------------------------------------------------------------------------------------------------
def test_extra_files_are_never_downloaded(hub, anon, cache):
    recipe = make_recipe()
    hostile = {
        RECIPE_FILENAME: recipe.to_json().encode(),
        "model.pkl": b"\x80\x04cposix\nsystem\n(S'touch /tmp/pwned'\ntR.",
        "autoaccel_hooks.py": b"import os; os.system('touch /tmp/pwned')",
        "pytorch_model.bin": b"\x80\x02}q\x00.",
    }
    hub.put_files("mallory/evil", hostile)
    assert Recipe.from_pretrained("mallory/evil", expected_base_model=FLUX, cache_dir=cache, api=anon) == recipe
    fetched = {path.rsplit("/resolve/", 1)[1] for _, path in _fetched(hub, "mallory/evil")}
    assert fetched == {f"main/{RECIPE_FILENAME}"}
    cached = {p.name for p in cache.rglob("*") if p.is_file() and "snapshots" in p.parts}
    assert cached == {RECIPE_FILENAME}


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b'{"schema_version": 1, "methods": [{"name": "os.system", "params": {}}]}', "unknown method"),
        (b'{"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": "rm -rf"}}]}', "params"),
        (b'{"schema_version": 2, "methods": []}', "unsupported schema version"),
        (b"\x80\x04cposix\nsystem\n.", "not valid JSON"),
        (b'{"schema_version": 1, "methods": [], "metrics": {"x": NaN}}', "NaN is not allowed"),
    ],
)
def test_tampered_recipe_is_refused(hub, anon, cache, content, error):
    hub.put_files("mallory/tampered", {RECIPE_FILENAME: content})
    with pytest.raises(RecipeError, match=error) as info:
        Recipe.from_pretrained("mallory/tampered", cache_dir=cache, api=anon)
    assert "mallory/tampered" in str(info.value)


def test_oversized_recipe_is_refused_before_download(hub, anon, cache):
    padding = " " * 1_100_000
    hub.put_files("mallory/huge", {RECIPE_FILENAME: b'{"schema_version": 1, "methods": []' + padding.encode() + b"}"})
    with pytest.raises(RecipeError, match="limit is 1000000 \\(not downloaded\\)"):
        Recipe.from_pretrained("mallory/huge", cache_dir=cache, api=anon)
    assert [m for m, _ in _fetched(hub, "mallory/huge")] == ["HEAD"]


def test_base_model_mismatch_is_refused_unless_overridden(hub, alice, anon, cache):
    make_recipe().push_to_hub("alice/flux-h100", api=alice)
    with pytest.raises(BaseModelMismatchError, match=f"made for {FLUX}, not {SD3}.*allow_base_model_mismatch=True"):
        Recipe.from_pretrained("alice/flux-h100", expected_base_model=SD3, cache_dir=cache, api=anon)
    loaded = Recipe.from_pretrained(
        "alice/flux-h100", expected_base_model=SD3, allow_base_model_mismatch=True, cache_dir=cache, api=anon
    )
    assert loaded.model_id == FLUX
    same = Recipe.from_pretrained("alice/flux-h100", expected_base_model=FLUX.lower(), cache_dir=cache, api=anon)
    assert same == loaded


# -- offline ------------------------------------------------------------------------------------------------------
def test_offline_mode_uses_the_cache(hub, alice, anon, cache, monkeypatch):
    recipe = make_recipe()
    recipe.push_to_hub("alice/flux-h100", api=alice)
    assert Recipe.from_pretrained("alice/flux-h100", cache_dir=cache, api=anon) == recipe
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert Recipe.from_pretrained("alice/flux-h100", cache_dir=cache, api=anon) == recipe
    with pytest.raises(HubError, match="offline mode is on.*not in the local cache"):
        Recipe.from_pretrained("alice/other", cache_dir=cache, api=anon)
    with pytest.raises(HubError, match="offline"):
        find_recipes(FLUX, api=anon, cache_dir=cache)
    assert resolve_from_hub(FLUX, "lpips<0.1", H100, api=anon, cache_dir=cache) is None
    assert hub.requests == []


def test_autoaccel_offline_also_keeps_requests_off(hub, alice, anon, cache, monkeypatch):
    make_recipe().push_to_hub("alice/flux-h100", api=alice)
    Recipe.from_pretrained("alice/flux-h100", cache_dir=cache, api=anon)
    hub.requests.clear()
    monkeypatch.setenv("AUTOACCEL_OFFLINE", "1")
    assert Recipe.from_pretrained("alice/flux-h100", cache_dir=cache, api=anon) == make_recipe()
    assert hub.requests == []


# -- discovery ----------------------------------------------------------------------------------------------------
@pytest.fixture
def published(hub, alice):
    make_recipe(speedup=2.5, lpips=[0.05, 0.1, 0.2, 0.2]).push_to_hub("alice/flux-fast", api=alice)
    make_recipe(speedup=1.6).push_to_hub("alice/flux-safe", api=alice)
    make_recipe(hardware=A100, speedup=1.9).push_to_hub("alice/flux-a100", api=alice)
    make_recipe(model_id=SD3, speedup=3.0).push_to_hub("alice/sd3", api=alice)
    # A card that claims FLUX over a recipe made for SD3: the recipe is the truth.
    liar = make_recipe(model_id=SD3, speedup=9.0)
    make_recipe().push_to_hub("alice/liar", api=alice)
    hub.put_files("alice/liar", {RECIPE_FILENAME: liar.to_json().encode()}, owner="alice")
    hub.requests.clear()
    return hub


def test_find_recipes_by_base_model_ranks_by_speedup(published, anon, cache):
    found = find_recipes(FLUX, api=anon, cache_dir=cache)
    assert [r.repo_id for r in found] == ["alice/flux-fast", "alice/flux-a100", "alice/flux-safe"]
    assert [r.speedup for r in found] == [2.5, 1.9, 1.6]
    assert found[1].hardware == "nvidia-a100-sxm4-80gb" and found[1].arch_class == "ampere"
    assert all(r.meets_budget is None and r.recipe.model_id == FLUX for r in found)
    assert _fetched(published, "alice/sd3") == []  # filtered by the Hub's base_model tag, never downloaded


def test_find_recipes_keeps_those_meeting_the_budget(published, anon, cache):
    found = find_recipes(FLUX, budget="p90(lpips)<0.1", api=anon, cache_dir=cache)
    assert [r.repo_id for r in found] == ["alice/flux-a100", "alice/flux-safe"]
    assert all(r.meets_budget for r in found)
    everything = find_recipes(FLUX, budget="p90(lpips)<0.1", include_failing=True, api=anon, cache_dir=cache)
    assert [r.repo_id for r in everything] == ["alice/flux-a100", "alice/flux-safe", "alice/flux-fast"]
    assert everything[-1].meets_budget is False
    assert everything[-1].violations == ("p90(lpips)<0.1: measured 0.2",)


def test_find_recipes_by_hardware(published, anon, cache):
    found = find_recipes(FLUX, hardware=H100, budget="p90(lpips)<0.1", api=anon, cache_dir=cache)
    assert [r.repo_id for r in found] == ["alice/flux-safe"]
    by_key = find_recipes(FLUX, hardware="nvidia-a100-sxm4-80gb", api=anon, cache_dir=cache)
    assert [r.repo_id for r in by_key] == ["alice/flux-a100"]


def test_resolve_from_hub_prefers_the_same_device_then_the_same_architecture(published, anon, cache):
    kwargs = {"api": anon, "cache_dir": cache}
    assert resolve_from_hub(FLUX, "p90(lpips)<0.1", H100, **kwargs) == make_recipe(speedup=1.6)
    assert resolve_from_hub(FLUX, None, H100, **kwargs) == make_recipe(speedup=2.5, lpips=[0.05, 0.1, 0.2, 0.2])
    h200 = {"device_kind": "cuda", "name": "NVIDIA H200", "arch_class": "hopper"}
    assert resolve_from_hub(FLUX, "p90(lpips)<0.1", h200, **kwargs) == make_recipe(speedup=1.6)
    l4 = {"device_kind": "cuda", "name": "NVIDIA L4", "arch_class": "ada"}
    assert resolve_from_hub(FLUX, "p90(lpips)<0.1", l4, **kwargs) is None
    assert resolve_from_hub(FLUX, "p90(lpips)<0.01", H100, **kwargs) is None
    assert resolve_from_hub(FLUX, None, H100, revision="another-revision", **kwargs) is None


def test_resolve_from_hub_never_raises_for_an_unreachable_hub(hub, cache):
    dead = HfApi(endpoint=_dead_endpoint())
    assert resolve_from_hub(FLUX, "lpips<0.1", H100, api=dead, cache_dir=cache) is None


# -- CLI helpers --------------------------------------------------------------------------------------------------
def test_cli_push_and_pull(hub, alice, anon, cache, tmp_path):
    path = make_recipe().save(tmp_path / "recipe.json")
    message = cli_push(path, "alice/flux-h100", api=alice)
    assert message.startswith(f"pushed {path} to {hub.url}/alice/flux-h100 (commit ")
    assert cli_pull("alice/flux-h100", api=anon, cache_dir=cache) == make_recipe().to_json()
    out = tmp_path / "pulled" / "r.json"
    assert "saved recipe alice/flux-h100 (steps, block_cache" in cli_pull("alice/flux-h100", out, api=anon)
    assert Recipe.load(out) == make_recipe()


def test_cli_errors_are_clear(hub, alice, anon, cache, tmp_path):
    path = make_recipe().save(tmp_path / "recipe.json")
    with pytest.raises(HubError, match="needs a Hugging Face token with write access: run `hf auth login`"):
        cli_push(path, "alice/flux-h100", api=anon)
    with pytest.raises(HubError, match="rejected the token"):
        cli_push(path, "alice/flux-h100", api=HfApi(endpoint=hub.url, token="hf_wrong"))
    with pytest.raises(HubError, match="no write access to bob/flux"):
        cli_push(path, "bob/flux", api=alice)
    with pytest.raises(HubError, match="repository alice/missing on .* not found"):
        cli_pull("alice/missing", api=anon, cache_dir=cache)
    hub.put_files("alice/empty", {"README.md": b"# nothing"}, owner="alice")
    with pytest.raises(HubError, match="holds no autoaccel_recipe.json, so it is not an AutoAccel recipe repository"):
        cli_pull("alice/empty", api=anon, cache_dir=cache)
    (tmp_path / "bad.json").write_text('{"schema_version": 1, "methods": [{"name": "nope"}]}')
    with pytest.raises(RecipeError, match="unknown method"):
        cli_push(tmp_path / "bad.json", "alice/flux-h100", api=alice)
    with pytest.raises(HubError, match="invalid repository id"):
        cli_pull("not a/valid id!", api=anon, cache_dir=cache)
    assert hub.repos.keys() == {"alice/empty"}


def test_cli_reports_network_failures(hub, cache, tmp_path):
    path = make_recipe().save(tmp_path / "recipe.json")
    dead = HfApi(endpoint=_dead_endpoint(), token="hf_alice")
    with pytest.raises(
        HubError, match="cannot push to alice/flux-h100: the Hub at http://127.0.0.1:.* cannot be reached"
    ):
        cli_push(path, "alice/flux-h100", api=dead)
    with pytest.raises(
        HubError, match="cannot download the recipe of alice/flux-h100: .* cannot be reached and nothing is cached"
    ):
        cli_pull("alice/flux-h100", api=dead, cache_dir=cache)
    with pytest.raises(HubError, match="cannot search recipes .* cannot be reached"):
        find_recipes(FLUX, api=dead, cache_dir=cache)


def _dead_endpoint() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- metrics, budget, helpers (no server) -------------------------------------------------------------------------
def test_parse_metrics_reads_every_documented_shape():
    brief = parse_metrics(
        {
            "speedup": {"median": 2.1, "ci95": [1.9, 2.3]},
            "quality": {"LPIPS": {"mean": 0.05, "ci95": [0.04, 0.06], "p90": 0.08, "p50": 0.04, "per_image": [0.1]}},
        }
    )
    assert brief.speedup == 2.1 and brief.speedup_ci95 == (1.9, 2.3)
    assert dict(brief.quality["lpips"].aggregates) == {"mean": 0.05, "p90": 0.08, "median": 0.04}
    assert brief.quality["lpips"].per_image == (0.1,)
    measurement = parse_metrics(
        {
            "speedup": 1.5,
            "speedup_ci": [1.4, 1.6],
            "quality": {"psnr": {"mean": "Infinity", "ci_low": 30, "ci_high": "Infinity", "n": 2}},
            "per_image": {"psnr": ["Infinity", 35.0]},
        }
    )
    assert measurement.speedup_ci95 == (1.4, 1.6)
    assert measurement.quality["psnr"].ci95 == (30.0, math.inf)
    assert measurement.quality["psnr"].per_image == (math.inf, 35.0)
    flat = parse_metrics({"speedup": 1.8, "lpips": {"mean": 0.05, "values": [0.04, 0.06]}, "ssim": 0.9, "note": "x"})
    assert set(flat.quality) == {"lpips", "ssim"} and flat.quality["ssim"].aggregates == {"mean": 0.9}
    assert flat.quality["lpips"].per_image == (0.04, 0.06)
    assert parse_metrics(None).speedup is None
    assert parse_metrics({"speedup": -1}).speedup is None and parse_metrics({"speedup": True}).speedup is None


def test_budget_is_checked_on_per_image_values_else_on_aggregates():
    per_image = {"quality": {"lpips": {"mean": 0.01, "per_image": [0.02, 0.04, 0.3]}}}
    assert budget_violations("lpips<0.2", per_image) == ()  # mean of the values: 0.12
    assert budget_violations("max(lpips)<0.2", per_image) == ("max(lpips)<0.2: measured 0.3",)
    aggregates = {"quality": {"lpips": {"mean": 0.05, "p90": 0.12}, "psnr": {"mean": 31.0}}}
    assert budget_violations("p90(lpips)<0.15 and psnr>=30", aggregates) == ()
    assert budget_violations("p90(lpips)<0.1", aggregates) == ("p90(lpips)<0.1: measured 0.12",)
    assert budget_violations("median(lpips)<0.1 and ssim>0.9", aggregates) == (
        "median(lpips)<0.1: the recipe reports no median of lpips (it has: mean, p90)",
        "ssim>0.9: the recipe reports no ssim",
    )
    assert budget_violations("lpips<0.1", None) == ("lpips<0.1: the recipe reports no lpips",)


def test_hardware_keys_match_hardware_profile_keys():
    from autoaccel.hardware import HardwareProfile

    assert hardware_key(H100) == "nvidia-h100-80gb-hbm3"
    assert hardware_key({"name": "NVIDIA H100 80GB HBM3"}) == "nvidia-h100-80gb-hbm3"
    assert hardware_key({"key": "nvidia-l4"}) == "nvidia-l4"
    assert hardware_key({"torch": "2.13"}) is None
    profile = HardwareProfile.current("cpu")
    assert hardware_key(profile) == hardware_key(profile.model_dump()) == profile.key()


def test_looks_like_repo_id(tmp_path):
    existing = tmp_path / "a" / "b"
    existing.mkdir(parents=True)
    assert looks_like_repo_id("alice/flux-h100") and looks_like_repo_id("Org.Name/repo_1")
    rejected = ("recipe.json", "dir/recipe.json", '{"schema_version": 1}', "a/b/c", "../x", "./x", str(existing), None)
    for value in rejected:
        assert not looks_like_repo_id(value), value


def test_card_and_recipe_file_are_all_a_repo_holds(hub, alice):
    make_recipe().push_to_hub("alice/flux-h100", api=alice)
    assert set(hub.files("alice/flux-h100")) == {".gitattributes", RECIPE_FILENAME, "README.md"}
    assert all(Path(p).suffix not in {".safetensors", ".bin", ".pt", ".pkl"} for p in hub.files("alice/flux-h100"))


def test_autoaccel_loads_a_recipe_repository_by_id(hub, alice, monkeypatch, tmp_path):
    import autoaccel.hub._io as hub_io
    from autoaccel import AutoAccel
    from autoaccel.testing import tiny_pipeline

    local = HfApi(endpoint=hub.url)  # what HF_ENDPOINT=<server> would give a user's process
    monkeypatch.setattr(hub_io, "get_api", lambda api=None: api or local)
    saved = tmp_path / "tiny-flux"
    tiny_pipeline("flux").save_pretrained(saved)
    recipe = Recipe.from_dict(
        {
            "schema_version": 1,
            "model_id": "someone/tiny-flux",
            "methods": [{"name": "block_cache", "params": {"threshold": 0.3}}],
        }
    )
    recipe.push_to_hub("alice/tiny-flux-recipe", api=alice)
    with pytest.raises(BaseModelMismatchError):
        AutoAccel.from_pretrained(saved, recipe="alice/tiny-flux-recipe")
    pipe = AutoAccel.from_pretrained(saved, recipe="alice/tiny-flux-recipe", allow_base_model_mismatch=True)
    assert pipe.autoaccel_recipe == recipe
    fetched = _fetched(hub, "alice/tiny-flux-recipe")
    assert fetched and all(path.endswith(RECIPE_FILENAME) for _, path in fetched)

"""The recipe database on SQLite and a real PostgreSQL: round trips, best-recipe fallbacks, concurrency, migrations."""

from __future__ import annotations

import datetime as dt
import logging
import math
import subprocess
import sys
import threading

import pytest
from sqlalchemy import MetaData, func, insert, select, text, update

from autoaccel.db import (
    DatabaseError,
    InvalidRecordError,
    NotFoundError,
    RecipeDB,
    SchemaVersionError,
    current,
    default_url,
    downgrade,
    engine_for,
    head_revision,
    normalize_url,
    upgrade,
    workload_fingerprint,
)
from autoaccel.db.migrate import schema_diff, script_directory
from autoaccel.db.models import VERSION_TABLE, HardwareProfileRow, RecipeRow
from autoaccel.errors import BudgetError, RecipeError
from autoaccel.recipes import Recipe
from tests._postgres import postgres_server, postgres_url  # noqa: F401

H100 = {
    "key": "nvidia-h100-80gb-hbm3",
    "name": "NVIDIA H100 80GB HBM3",
    "device_kind": "cuda",
    "arch_class": "hopper",
    "driver_version": "550.54",
    "torch_version": "2.13.0",
}
H100_OTHER_DRIVER = {**H100, "driver_version": "570.10"}
H200 = {"key": "nvidia-h200", "name": "NVIDIA H200", "device_kind": "cuda", "arch_class": "hopper"}
A100 = {"key": "nvidia-a100-sxm4-80gb", "name": "NVIDIA A100-SXM4-80GB", "device_kind": "cuda", "arch_class": "ampere"}
WORKLOAD = {"height": 512, "width": 512, "steps": 20, "guidance": 3.5, "prompts": "fashion-v1"}
MODEL = "org/fashion-flux"


def make_recipe(threshold: float = 0.1, **fields) -> Recipe:
    data = {"schema_version": 1, "methods": [{"name": "block_cache", "params": {"threshold": threshold}}]}
    return Recipe.from_dict({**data, "model_id": MODEL, "revision": "abc123", **fields})


def quality(lpips_mean: float, lpips_p90: float, psnr: float = 32.0) -> dict:
    return {"lpips": {"mean": lpips_mean, "p90": lpips_p90, "max": lpips_p90 + 0.05}, "psnr": {"mean": psnr}}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'recipes.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db(db_url: str):
    with RecipeDB(db_url) as database:
        yield database


# -- round trips -------------------------------------------------------------------------------------------------------
def test_models_hardware_workloads_round_trip(db: RecipeDB):
    first = db.upsert_model(MODEL, "abc123")
    assert db.upsert_model(MODEL, "abc123", pipeline_class="FluxPipeline") == first
    assert db.upsert_model(MODEL) != first  # revision None is stored as "main", another row

    profile = {**H100, "memory_gib": 80, "compute_capability": [9, 0], "diffusers": "0.42.1"}
    fp = db.upsert_hardware(profile)
    assert (
        fp == db.upsert_hardware(dict(reversed(profile.items()))) == db.upsert_hardware({**profile, "memory_gib": 81})
    )
    assert fp != db.upsert_hardware({**profile, "driver_version": "570.10"})  # another software stack
    wl = db.upsert_workload(WORKLOAD)
    assert wl == workload_fingerprint(dict(reversed(WORKLOAD.items()))) == db.upsert_workload(WORKLOAD)
    assert wl != workload_fingerprint({**WORKLOAD, "steps": 28})

    with db.session() as s:
        hw = s.scalars(select(HardwareProfileRow).filter_by(fingerprint=fp)).one()
        assert (hw.key, hw.name, hw.device_kind, hw.arch_class) == (H100["key"], H100["name"], "cuda", "hopper")
        assert (hw.memory_bytes, hw.compute_capability, hw.driver) == (80 * 2**30, "9.0", "550.54")
        assert (hw.torch_version, hw.diffusers_version) == ("2.13.0", "0.42.1")
        assert hw.raw == profile
        assert hw.created_at.tzinfo == dt.timezone.utc
        assert s.scalar(select(func.count()).select_from(HardwareProfileRow)) == 2


def test_studies_and_trials_round_trip(db: RecipeDB):
    study = db.create_or_get_study("s1", model_id=MODEL, hardware=H100, workload=WORKLOAD, budget="lpips<0.1")
    assert (study.name, study.optuna_study_name, study.model_id, study.revision) == ("s1", "s1", MODEL, "main")
    assert (study.hardware_key, study.workload_fingerprint) == (H100["key"], workload_fingerprint(WORKLOAD))
    assert study.status == "running" and study.created_at.tzinfo == dt.timezone.utc
    again = db.create_or_get_study("s1", model_id=MODEL, hardware=H100, workload=WORKLOAD, budget="lpips<0.1")
    assert again.id == study.id
    with pytest.raises(InvalidRecordError, match="exists for"):
        db.create_or_get_study("s1", model_id="other/model", hardware=H100, budget="lpips<0.1")

    t1 = db.record_trial(study.id, 1, params={"threshold": 0.2}, optuna_trial_id=7)
    t0 = db.record_trial(study.id, 0, params={"threshold": 0.1}, state="complete", metrics={"lpips": 0.05}, speedup=1.8)
    assert t1.state == "running" and t1.finished_at is None and t0.finished_at is not None
    done = db.update_trial(t1.id, state="failed", metrics={"lpips": math.nan, "psnr": 30.5}, error="CUDA OOM")
    assert done.metrics == {"lpips": None, "psnr": 30.5}  # JSON has no NaN
    assert done.error == "CUDA OOM" and done.finished_at >= done.started_at
    assert done.finished_at.tzinfo == dt.timezone.utc
    trials = db.list_trials(study.id)
    assert [(t.number, t.state, t.optuna_trial_id, t.speedup) for t in trials] == [
        (0, "complete", None, 1.8),
        (1, "failed", 7, None),
    ]
    with pytest.raises(DatabaseError, match="(?i)unique|duplicate"):
        db.record_trial(study.id, 1, params={})
    with pytest.raises(InvalidRecordError, match="state"):
        db.update_trial(t0.id, state="done")

    db.set_study_status(study.id, "complete")
    assert db.get_study("s1").status == "complete"
    with pytest.raises(NotFoundError):
        db.get_study("nope")


def test_recipes_round_trip(db: RecipeDB):
    study = db.create_or_get_study("s", model_id=MODEL, revision="abc123", hardware=H100)
    recipe = make_recipe(pipeline_class="FluxPipeline", workload=WORKLOAD, budget="lpips<0.1")
    rid = db.add_recipe(recipe, hardware=H100, speedup=2.5, metrics=quality(0.04, 0.07), study="s")
    assert db.get_recipe(rid) == recipe
    info = db.get_recipe_info(rid)
    assert (info.model_id, info.revision, info.pipeline_class) == (MODEL, "abc123", "FluxPipeline")
    assert (info.hardware_key, info.hardware_name, info.arch_class) == (H100["key"], H100["name"], "hopper")
    assert (info.workload_fingerprint, info.budget, info.speedup) == (workload_fingerprint(WORKLOAD), "lpips<0.1", 2.5)
    assert (info.quality, info.validated, info.source, info.study_id) == (quality(0.04, 0.07), True, "search", study.id)

    # defaults from the recipe's own fields
    own = make_recipe(0.2, hardware=A100, metrics={"speedup": 1.5, "lpips": {"mean": 0.02}, "note": "x"})
    rid2 = db.add_recipe(own, validated=False, source="import")
    info2 = db.get_recipe_info(rid2)
    assert (info2.hardware_key, info2.speedup, info2.quality, info2.validated) == (
        A100["key"],
        1.5,
        {"lpips": {"mean": 0.02}},
        False,
    )

    rows, total = db.list_recipes(model_id=MODEL)
    assert total == 2 and [r.id for r in rows] == [rid2, rid]
    assert db.list_recipes(hardware_name="nvidia h100 80gb hbm3")[1] == 1
    assert [r.id for r in db.list_recipes(arch_class="ampere")[0]] == [rid2]
    assert [r.id for r in db.list_recipes(validated=True, workload_fingerprint=workload_fingerprint(WORKLOAD))[0]] == [
        rid
    ]
    page, total = db.list_recipes(limit=1, offset=1)
    assert total == 2 and [r.id for r in page] == [rid]
    assert db.list_recipes(model_id="other")[1] == 0
    assert db.list_recipes(pipeline_class="FluxPipeline")[1] == 2  # a model's class, shared by its recipes
    assert db.list_recipes(pipeline_class="StableDiffusionPipeline")[1] == 0

    db.delete_recipe(rid)
    with pytest.raises(NotFoundError):
        db.get_recipe(rid)
    with pytest.raises(NotFoundError):
        db.delete_recipe(rid)


def test_hardware_profile_and_workload_objects(db: RecipeDB):
    # The identities must agree with autoaccel.hardware and autoaccel.workload, whichever spelling is stored.
    from autoaccel.hardware import HardwareProfile
    from autoaccel.workload import Workload

    profile = HardwareProfile.current("cpu")
    workload = Workload(prompts=["a red dress"], seeds=[0, 1], num_inference_steps=4, height=64, width=64)
    rid = db.add_recipe(make_recipe(), hardware=profile, workload=workload, speedup=1.5)
    info = db.get_recipe_info(rid)
    assert (info.hardware_key, info.hardware_name, info.arch_class) == (profile.key(), profile.name, profile.arch_class)
    assert info.workload_fingerprint == workload.fingerprint() == workload_fingerprint(workload.to_dict())
    assert (
        db.upsert_hardware(profile.model_dump(mode="json")) == db.upsert_hardware(profile) == info.hardware_fingerprint
    )
    match = db.best_recipe(MODEL, None, profile.model_dump(mode="json"), workload.fingerprint())
    assert (match.recipe_id, match.fallback) == (rid, "exact")
    newer = profile.model_copy(update={"torch_version": "9.9.9"})
    assert db.best_recipe(MODEL, None, newer, workload.fingerprint()).fallback == "same_gpu"


def test_invalid_records_are_refused(db: RecipeDB):
    with pytest.raises(RecipeError, match="model_id"):
        db.add_recipe(Recipe.from_dict({"schema_version": 1, "methods": []}), hardware=H100, speedup=2.0)
    with pytest.raises(InvalidRecordError, match="speedup"):
        db.add_recipe(make_recipe(), hardware=H100)
    with pytest.raises(InvalidRecordError, match="speedup"):
        db.add_recipe(make_recipe(), hardware=H100, speedup=math.inf)
    with pytest.raises(InvalidRecordError, match="hardware"):
        db.add_recipe(make_recipe(), speedup=2.0)
    with pytest.raises(InvalidRecordError, match="device name"):
        db.upsert_hardware({"key": "x", "arch_class": "hopper"})
    with pytest.raises(InvalidRecordError, match="not both"):
        db.add_recipe(make_recipe(), hardware=H100, speedup=2.0, workload=WORKLOAD, workload_fingerprint="ab")
    with pytest.raises(NotFoundError, match="workload"):
        db.add_recipe(make_recipe(), hardware=H100, speedup=2.0, workload_fingerprint="ab")
    with pytest.raises(InvalidRecordError, match=r"metrics\.lpips: object"):
        db.add_recipe(make_recipe(), hardware=H100, speedup=2.0, metrics={"lpips": object()})
    with pytest.raises(NotFoundError, match="study"):
        db.add_recipe(make_recipe(), hardware=H100, speedup=2.0, study="missing")
    assert db.list_recipes()[1] == 0  # nothing half-written


def test_session_rolls_back_on_error(db: RecipeDB):
    with pytest.raises(RuntimeError), db.session() as s:
        from autoaccel.db import repository

        repository.upsert_model(s, MODEL)
        raise RuntimeError("boom")
    with db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM autoaccel_models")) == 0


# -- best recipe -------------------------------------------------------------------------------------------------------
@pytest.fixture
def catalogue(db: RecipeDB) -> dict[str, int]:
    """Recipes for MODEL on WORKLOAD: H100 (fast but lossy, and a safe one), H100 other driver, H200, A100."""
    wl = db.upsert_workload(WORKLOAD)
    add = db.add_recipe
    return {
        "h100_fast": add(
            make_recipe(0.3), hardware=H100, workload_fingerprint=wl, speedup=3.0, metrics=quality(0.2, 0.3)
        ),
        "h100_safe": add(
            make_recipe(0.1), hardware=H100, workload_fingerprint=wl, speedup=2.0, metrics=quality(0.04, 0.07)
        ),
        "h100_unvalidated": add(
            make_recipe(0.5), hardware=H100, workload_fingerprint=wl, speedup=9.0, metrics={}, validated=False
        ),
        "h100b": add(
            make_recipe(0.1),
            hardware=H100_OTHER_DRIVER,
            workload_fingerprint=wl,
            speedup=2.2,
            metrics=quality(0.03, 0.05),
        ),
        "h200": add(make_recipe(0.1), hardware=H200, workload_fingerprint=wl, speedup=2.4, metrics=quality(0.03, 0.05)),
        "a100": add(make_recipe(0.1), hardware=A100, workload_fingerprint=wl, speedup=1.7, metrics=quality(0.03, 0.05)),
        "other_workload": add(
            make_recipe(0.1),
            hardware=H100,
            workload_fingerprint=db.upsert_workload({**WORKLOAD, "steps": 50}),
            speedup=5.0,
            metrics=quality(0.01, 0.02),
        ),
    }


def test_best_recipe_exact_and_budget(db: RecipeDB, catalogue, caplog):
    wl = workload_fingerprint(WORKLOAD)
    with caplog.at_level(logging.WARNING, logger="autoaccel.db"):
        match = db.best_recipe(MODEL, "abc123", H100, wl)
    assert (match.recipe_id, match.fallback, match.speedup) == (catalogue["h100_fast"], "exact", 3.0)
    assert match.recipe == make_recipe(0.3) and not caplog.records
    # the fastest one breaks the budget: the slower safe one on the same hardware wins, before any fallback
    for budget in ("lpips<0.1", "p90(lpips)<0.1 and psnr>30", "max(lpips)<=0.13"):
        assert db.best_recipe(MODEL, "abc123", H100, wl, budget).recipe_id == catalogue["h100_safe"], budget
    # nothing on H100 meets a tight budget: the same GPU model with another driver does
    tight = db.best_recipe(MODEL, "abc123", H100, wl, "p90(lpips)<0.06")
    assert (tight.recipe_id, tight.fallback) == (catalogue["h100b"], "same_gpu")
    # aggregates that are not stored cannot be shown to hold
    assert db.best_recipe(MODEL, "abc123", H100, wl, "p95(lpips)<0.5") is None
    assert db.best_recipe(MODEL, "abc123", H100, wl, "ssim>0.5") is None
    assert db.best_recipe(MODEL, "abc123", H100, wl, "lpips<0.001") is None
    # workload: never relaxed, but None means any
    assert db.best_recipe(MODEL, "abc123", H100, None).recipe_id == catalogue["other_workload"]
    assert db.best_recipe(MODEL, "abc123", H100, workload_fingerprint({"steps": 4})) is None
    assert db.best_recipe(MODEL, "other-revision", H100, wl) is None
    assert db.best_recipe(MODEL, None, H100, wl).recipe_id == catalogue["h100_fast"]
    assert db.best_recipe("org/other", None, H100, wl) is None
    # a bare device key has no software versions: every stack on that device is exact
    by_key = db.best_recipe(MODEL, "abc123", H100["key"], wl, "p90(lpips)<0.06")
    assert (by_key.recipe_id, by_key.fallback) == (catalogue["h100b"], "exact")
    by_fingerprint = db.best_recipe(MODEL, "abc123", db.upsert_hardware(H100), wl, "p90(lpips)<0.06")
    assert (by_fingerprint.recipe_id, by_fingerprint.fallback) == (catalogue["h100b"], "same_gpu")
    with pytest.raises(BudgetError):
        db.best_recipe(MODEL, "abc123", H100, wl, "lpips>0.1")


def test_best_recipe_fallbacks(db: RecipeDB, catalogue, caplog):
    wl = workload_fingerprint(WORKLOAD)
    new_stack = {**H100, "torch_version": "2.14.0"}
    with caplog.at_level(logging.WARNING, logger="autoaccel.db"):
        same_gpu = db.best_recipe(MODEL, "abc123", new_stack, wl)
    assert (same_gpu.recipe_id, same_gpu.fallback) == (catalogue["h100_fast"], "same_gpu")
    assert same_gpu.hardware_key == H100["key"]
    assert "validate it on this machine" in caplog.text and "same GPU model" in caplog.text
    renamed = {**H100, "key": "h100-custom-key", "name": "nvidia h100 80gb hbm3"}  # names compare ignoring case
    assert db.best_recipe(MODEL, "abc123", renamed, wl).fallback == "same_gpu"

    gh200 = {"key": "gh200", "name": "NVIDIA GH200", "arch_class": "hopper"}
    same_arch = db.best_recipe(MODEL, "abc123", gh200, wl, "lpips<0.1")
    assert (same_arch.recipe_id, same_arch.fallback, same_arch.hardware_name) == (
        catalogue["h200"],
        "same_arch",
        "NVIDIA H200",
    )
    assert db.best_recipe(MODEL, "abc123", {"key": "l4", "name": "NVIDIA L4", "arch_class": "ada"}, wl) is None
    assert db.best_recipe(MODEL, "abc123", {"key": "cpu", "name": "AMD EPYC"}, wl) is None
    assert db.best_recipe(MODEL, "abc123", "unknown-key", wl) is None


def test_budget_checked_on_per_image_values(db: RecipeDB):
    values = [0.01] * 9 + [0.5]  # mean 0.059, max 0.5
    rid = db.add_recipe(make_recipe(), hardware=H100, speedup=2.0, metrics={"LPIPS": {"values": values}})
    assert db.best_recipe(MODEL, None, H100, None, "lpips<0.06").recipe_id == rid
    assert db.best_recipe(MODEL, None, H100, None, "median(lpips)<0.02").recipe_id == rid
    assert db.best_recipe(MODEL, None, H100, None, "max(lpips)<0.4") is None


# -- concurrency -------------------------------------------------------------------------------------------------------
def test_concurrent_study_creation(db: RecipeDB):
    workers, results, errors = 4, [], []
    barrier = threading.Barrier(workers)

    def create() -> None:
        try:
            barrier.wait()
            results.append(db.create_or_get_study("shared", model_id=MODEL, hardware=H100, workload=WORKLOAD).id)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == workers and len(set(results)) == 1
    with db.session() as s:
        counts = [s.scalar(text(f"SELECT count(*) FROM autoaccel_{t}")) for t in ("studies", "models", "hardware")]
    assert counts == [1, 1, 1]


def test_concurrent_first_use_creates_the_schema_once(db_url: str):
    workers, errors = 3, []
    barrier = threading.Barrier(workers)

    def first_use() -> None:
        try:
            barrier.wait()
            with RecipeDB(db_url) as db:
                db.upsert_model(MODEL)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=first_use) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and current(db_url) == head_revision()


_WORKER = """
import sys
from autoaccel.db import RecipeDB
print("ready", flush=True)
sys.stdin.readline()
with RecipeDB(sys.argv[1]) as db:
    hardware = {"key": "h100", "name": "NVIDIA H100"}
    print(db.create_or_get_study("shared", model_id="org/model", hardware=hardware).id)
"""


def test_processes_share_a_new_database(db_url: str):
    # Separate processes create the schema and the same study at once: the database's own locks must decide.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 3
    for p in procs:  # release all of them before waiting for any
        p.stdin.write("go\n")
        p.stdin.close()
    outputs = [p.stdout.read().split() for p in procs]
    for p in procs:
        p.stdout.close()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert len({tuple(o) for o in outputs}) == 1 and len(outputs[0]) == 1
    with RecipeDB(db_url) as db:
        assert db.get_study("shared").id == int(outputs[0][0])


# -- migrations --------------------------------------------------------------------------------------------------------
def test_single_head():
    assert script_directory().get_heads() == [head_revision()] == ["0003"]
    assert [r.revision for r in script_directory().walk_revisions()] == ["0003", "0002", "0001"]


def test_upgrade_empty_database_matches_models(db_url: str):
    assert current(db_url) is None
    upgrade(db_url, "0001")
    assert current(db_url) == "0001"
    assert any("source" in repr(d) for d in schema_diff(db_url))  # the comparison sees a real difference
    upgrade(db_url)
    assert current(db_url) == "0003"
    assert schema_diff(db_url) == []  # models == migrations


def test_upgrade_from_0001_with_data(db_url: str):
    upgrade(db_url, "0001")
    engine = engine_for(db_url)
    meta = MetaData()
    meta.reflect(engine)
    t = meta.tables
    now = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    with engine.begin() as conn:
        models, hardware = t["autoaccel_models"], t["autoaccel_hardware"]
        model_ref_id = conn.execute(
            insert(models).values(model_id=MODEL, revision="abc123", created_at=now).returning(models.c.id)
        ).scalar_one()
        hardware_id = conn.execute(
            insert(hardware)
            .values(
                fingerprint="f" * 32, key=H100["key"], name=H100["name"], device_kind="cuda", raw=H100, created_at=now
            )
            .returning(hardware.c.id)
        ).scalar_one()
        conn.execute(
            insert(t["autoaccel_recipes"]).values(
                id=5,  # kept by the batch-mode table copy
                model_ref_id=model_ref_id,
                hardware_id=hardware_id,
                recipe=make_recipe().to_dict(),
                speedup=2.0,
                quality=quality(0.04, 0.07),
                validated=True,
                created_at=now,
            )
        )
    engine.dispose()

    with pytest.raises(
        SchemaVersionError, match=r"revision '0001' but this autoaccel needs '0003'.*autoaccel db upgrade --db"
    ):
        RecipeDB(db_url)
    upgrade(db_url)
    with RecipeDB(db_url) as db:
        info = db.get_recipe_info(5)
        assert (info.source, info.speedup, info.created_at, info.hardware_key) == ("search", 2.0, now, H100["key"])
        assert db.best_recipe(MODEL, "abc123", H100, None, "lpips<0.05").recipe_id == 5
        rid = db.add_recipe(make_recipe(), hardware=H100, speedup=1.5, source="hub")
        assert db.get_recipe_info(rid).source == "hub"
        with pytest.raises(DatabaseError, match="(?i)check"), db.session() as s:
            s.execute(update(RecipeRow).where(RecipeRow.id == 5).values(source="bogus"))
        with pytest.raises(DatabaseError, match="(?i)foreign key"), db.session() as s:
            s.execute(update(RecipeRow).where(RecipeRow.id == 5).values(hardware_id=99))


def test_downgrade_and_upgrade_again_keep_data(db_url: str):
    with RecipeDB(db_url) as db:
        rid = db.add_recipe(make_recipe(), hardware=H100, speedup=2.0, source="hub")
    downgrade(db_url, "0001")
    assert current(db_url) == "0001" and any("source" in repr(d) for d in schema_diff(db_url))
    upgrade(db_url)
    with RecipeDB(db_url) as db:
        assert db.get_recipe_info(rid).source == "search"  # the column came back with its default
        assert db.get_recipe(rid) == make_recipe()
    downgrade(db_url, "base")
    assert current(db_url) is None and schema_diff(db_url) != []


def test_schema_version_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with pytest.raises(SchemaVersionError, match=f"create it with: autoaccel db upgrade --db {url}"):
        RecipeDB(url, create=False)
    RecipeDB(url).close()
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer autoaccel"):
        RecipeDB(url)
    with pytest.raises(DatabaseError, match="cannot upgrade"):
        upgrade(url, "0042")


def test_optuna_storage_shares_the_database(db_url: str):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna first, then us (and the other way round below): no clash of tables or version tables
    first = optuna.storages.RDBStorage(db_url)
    optuna.create_study(storage=first, study_name="opt").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    first.engine.dispose()
    with RecipeDB(db_url) as db:
        assert current(db_url) == head_revision()
        storage = db.optuna_storage()
        loaded = optuna.load_study(study_name="opt", storage=storage)
        loaded.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
        assert len(loaded.trials) == 3
        ours = db.create_or_get_study("ours", model_id=MODEL, hardware=H100, optuna_study_name="opt")
        db.record_trial(ours.id, 0, params=loaded.trials[0].params, optuna_trial_id=loaded.trials[0]._trial_id)
        storage.engine.dispose()
    engine = engine_for(db_url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM trials")) == 3
        assert conn.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}")) == head_revision()
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) != head_revision()  # Optuna's own
        assert conn.scalar(select(func.count()).select_from(RecipeRow)) == 0
    engine.dispose()
    assert schema_diff(db_url) == []


def test_optuna_after_our_upgrade(tmp_path):
    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(storage=storage, study_name="later").optimize(lambda t: t.suggest_int("n", 0, 3), n_trials=1)
    storage.engine.dispose()
    assert current(url) == head_revision()
    with RecipeDB(url) as db:
        assert db.list_recipes() == ([], 0)


# -- connections and URLs ----------------------------------------------------------------------------------------------
def test_unreachable_database_is_a_clear_error():
    with pytest.raises(DatabaseError) as err:
        RecipeDB("postgresql://alice:s3cret@127.0.0.1:1/x")
    message = str(err.value)
    assert "postgresql+psycopg://alice:***@127.0.0.1:1/x" in message and "s3cret" not in message
    with pytest.raises(DatabaseError, match="not a database URL"):
        RecipeDB("postgresql://host:notaport/db")


def test_sqlite_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatabaseError, match="cannot create the folder"):
        RecipeDB(f"sqlite:///{blocker / 'sub' / 'r.db'}")
    blocker.write_text("this is not a database\n" * 100)
    with pytest.raises(DatabaseError, match=f"{blocker}.*not a database"):
        RecipeDB(f"sqlite:///{blocker}")


def test_default_url_and_pragmas(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOACCEL_DB_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_url() == f"sqlite:///{tmp_path / 'xdg' / 'autoaccel' / 'recipes.db'}"
    with RecipeDB() as db:
        assert (tmp_path / "xdg" / "autoaccel" / "recipes.db").exists()
        with db.session() as s:  # after the implicit upgrade, pooled connections keep their settings
            pragmas = [s.scalar(text(f"PRAGMA {p}")) for p in ("journal_mode", "foreign_keys", "busy_timeout")]
        assert pragmas == ["wal", 1, 30000]
    monkeypatch.setenv("AUTOACCEL_DB_URL", "postgresql://u:p@db.example:5432/recipes")
    assert normalize_url().render_as_string(hide_password=False) == "postgresql+psycopg://u:p@db.example:5432/recipes"
    assert normalize_url(str(tmp_path / "x.db")).database == str(tmp_path / "x.db")

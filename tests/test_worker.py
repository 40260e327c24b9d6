"""The job queue and the search workers: exclusive claims, leases and requeueing, progress, cancellation, a killed
worker, joining a job's study. On SQLite and a real PostgreSQL; searches use the test-only ``tiny:flux`` model."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from autoaccel.db import RecipeDB
from autoaccel.db.jobs import JobStateError, claim_job, heartbeat_job
from autoaccel.db.models import utcnow
from autoaccel.hardware import HardwareProfile
from autoaccel.service.crud import submit_search
from autoaccel.service.schemas import SearchCreate
from autoaccel.service.worker import Worker
from tests._postgres import postgres_server, postgres_url  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = {
    "prompts": ["a red cat", "a blue dog", "a green tree", "a small house"],
    "seeds": [0],
    "num_inference_steps": 8,
    "height": 32,
    "width": 32,
    "call_kwargs": {"max_sequence_length": 32},
}
SLOW_METHODS = ["magcache", "quantize", "quant_attention", "sparse_attention", "attention_backend", "compile"]


def search_request(n_trials: int = 3, **changes) -> SearchCreate:
    fields = {
        "model": "tiny:flux",
        "budget": "lpips<0.2",
        "workload": WORKLOAD,
        "n_trials": n_trials,
        "exclude": SLOW_METHODS,
        "repeats": 1,
        "validation_repeats": 1,
        **changes,
    }
    return SearchCreate(**fields)


def submit(db: RecipeDB, n_trials: int = 3, **changes):
    return submit_search(db, search_request(n_trials, **changes))


def wait_for(condition, timeout: float = 120.0, every: float = 0.05):
    """Polls ``condition()`` until it returns something truthy (the test fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every)
    pytest.fail(f"condition not met within {timeout} s")


def finished_trials(db: RecipeDB, study_name: str) -> dict[int, tuple]:
    storage = db.optuna_storage()
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        return {t.number: (t.state, t.values) for t in study.get_trials(deepcopy=False, states=done)}
    finally:
        storage.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def db(db_url: str) -> Iterator[RecipeDB]:
    with RecipeDB(db_url) as recipe_db:
        yield recipe_db


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[RecipeDB]:
    with RecipeDB(f"sqlite:///{tmp_path / 'worker.db'}") as recipe_db:
        yield recipe_db


# -- the queue ------------------------------------------------------------------------------------------------------
def test_two_workers_never_claim_the_same_job(db_url: str, db: RecipeDB):
    jobs = {submit(db).id for _ in range(40)}
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def claimer(name: str) -> None:
        with RecipeDB(db_url) as own:  # its own engine and connections, like another process
            start.wait()
            mine = claimed.setdefault(name, [])
            while (job := own.claim_job(name, lease_s=60)) is not None:
                mine.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [job for ids in claimed.values() for job in ids]
    assert sorted(everything) == sorted(jobs)  # each job claimed exactly once
    assert db.list_jobs(status="running")[1] == 40 and db.list_jobs(status="queued")[1] == 0
    for name, ids in claimed.items():
        assert {db.get_job(i).worker_id for i in ids} <= {name}


def test_claims_take_the_oldest_job_for_the_worker_device(db: RecipeDB):
    gpu1 = submit(db, device="cuda:1")
    anywhere = submit(db)
    cpu = submit(db, device="cpu")
    assert db.claim_job("cpu-worker", lease_s=60, devices=["cpu"]).id == anywhere.id
    assert db.claim_job("cpu-worker", lease_s=60, devices=["cpu"]).id == cpu.id
    assert db.claim_job("cpu-worker", lease_s=60, devices=["cpu"]) is None
    assert db.claim_job("gpu0", lease_s=60, devices=["cuda", "cuda:0"]) is None
    job = db.claim_job("gpu1", lease_s=60, devices=["cuda", "cuda:1"])
    assert (job.id, job.status, job.worker_id, job.attempts) == (gpu1.id, "running", "gpu1", 1)


def test_expired_leases_are_requeued_then_failed(db: RecipeDB):
    job = submit(db)  # max_attempts 3
    t0 = utcnow()
    with db.session() as s:
        first = claim_job(s, "w1", lease_s=10, now=t0)
    assert (first.attempts, first.lease_expires_at) == (1, t0 + dt.timedelta(seconds=10))
    with db.session() as s:
        assert claim_job(s, "w2", lease_s=10, now=t0 + dt.timedelta(seconds=9)) is None  # lease still held
        assert heartbeat_job(s, job.id, "w1", lease_s=10, now=t0 + dt.timedelta(seconds=9)) == "ok"
        assert claim_job(s, "w2", lease_s=10, now=t0 + dt.timedelta(seconds=18)) is None  # renewed until t0 + 19
        second = claim_job(s, "w2", lease_s=10, now=t0 + dt.timedelta(seconds=20))
    assert (second.id, second.worker_id, second.attempts) == (job.id, "w2", 2)
    assert db.heartbeat_job(job.id, "w1", lease_s=10) == "lost"  # w1 woke up: it must stop
    assert db.finish_job(job.id, "w1", status="succeeded") is False
    with db.session() as s:
        third = claim_job(s, "w3", lease_s=10, now=t0 + dt.timedelta(seconds=40))
        assert third.attempts == 3
        assert claim_job(s, "w4", lease_s=10, now=t0 + dt.timedelta(seconds=60)) is None
    failed = db.get_job(job.id)
    assert (failed.status, failed.worker_id) == ("failed", None)
    assert "max_attempts" in failed.error


def test_heartbeat_progress_cancel_release_and_finish(db: RecipeDB):
    job = submit(db)
    db.claim_job("w1", lease_s=60)
    assert db.heartbeat_job(job.id, "w1", lease_s=60, progress={"trials_done": 2, "best_speedup": float("nan")}) == "ok"
    assert db.get_job(job.id).progress == {"trials_done": 2, "best_speedup": None}  # no NaN in JSON
    assert db.release_job(job.id, "w1") is True  # a worker shutting down: back to the queue, not an attempt
    released = db.get_job(job.id)
    assert (released.status, released.worker_id, released.attempts) == ("queued", None, 0)
    db.claim_job("w2", lease_s=60)
    db.request_cancel(job.id)
    assert db.heartbeat_job(job.id, "w2", lease_s=60) == "cancel"
    assert db.finish_job(job.id, "w2", status="cancelled") is True
    assert db.get_job(job.id).status == "cancelled"
    with pytest.raises(JobStateError, match="already finished"):
        db.request_cancel(job.id)


# -- workers --------------------------------------------------------------------------------------------------------
def test_worker_runs_a_search_and_stores_the_recipe(sqlite_db: RecipeDB):
    quiet = ["quant_attention", "sparse_attention", "attention_backend", "compile"]  # as tests/test_search.py
    job = submit(sqlite_db, n_trials=8, exclude=quiet, repeats=2, validation_repeats=2)
    done = Worker(sqlite_db, device="cpu", lease_s=30, cache_dir=False).run_once()
    assert done.status == "succeeded", done.error
    assert (done.id, done.attempts, done.error) == (job.id, 1, None)
    progress = done.progress
    assert progress["trials_done"] == 8 == len(finished_trials(sqlite_db, job.study_name))
    assert progress["n_trials"] == 8
    assert progress["pareto"] and all(p["quality"] < 0.2 for p in progress["pareto"])
    assert progress["best_speedup"] == max(p["speedup"] for p in progress["pareto"])
    assert done.recipe_id is not None
    stored = sqlite_db.get_recipe_info(done.recipe_id)
    assert (stored.model_id, stored.budget) == ("tiny:flux", "lpips<0.2")
    trials = sqlite_db.list_trials(sqlite_db.get_study(job.study_name).id)
    assert len(trials) == 8  # mirrored into the autoaccel tables
    cpu = HardwareProfile.current("cpu").key()
    assert sqlite_db.best_recipe("tiny:flux", None, cpu, None, "lpips<0.2").recipe_id == done.recipe_id
    assert Worker(sqlite_db, device="cpu").run_once() is None  # the queue is empty


def test_a_failing_job_is_recorded_and_the_worker_goes_on(sqlite_db: RecipeDB):
    bad = submit(sqlite_db, model="tiny:nope")
    good = submit(sqlite_db, n_trials=1)
    ran = Worker(sqlite_db, device="cpu", cache_dir=False).run(idle_exit=True)
    assert ran == 2
    failed = sqlite_db.get_job(bad.id)
    assert failed.status == "failed" and "unknown tiny pipeline kind 'nope'" in failed.error
    assert sqlite_db.get_job(good.id).status == "succeeded"


def test_worker_honours_cancellation(sqlite_db: RecipeDB):
    job = submit(sqlite_db, n_trials=200)
    worker = Worker(sqlite_db, device="cpu", lease_s=30, cache_dir=False)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    wait_for(lambda: sqlite_db.get_job(job.id).progress.get("trials_done", 0) >= 1)
    sqlite_db.request_cancel(job.id)
    thread.join(timeout=120)
    assert not thread.is_alive()
    cancelled = sqlite_db.get_job(job.id)
    assert (cancelled.status, cancelled.recipe_id) == ("cancelled", None)
    assert 1 <= len(finished_trials(sqlite_db, job.study_name)) < 200


def test_a_job_cancelled_right_after_its_claim_runs_no_trial(sqlite_db: RecipeDB):
    job = submit(sqlite_db)
    claimed = sqlite_db.claim_job("w1", lease_s=60)
    sqlite_db.request_cancel(job.id)
    done = Worker(sqlite_db, device="cpu", worker_id="w1").run_job(claimed)
    assert (done.status, done.finished_at is not None) == ("cancelled", True)
    assert finished_trials_or_none(sqlite_db, job.study_name) is None  # the search never started


def finished_trials_or_none(db: RecipeDB, study_name: str) -> dict | None:
    try:
        return finished_trials(db, study_name)
    except KeyError:
        return None


def test_a_worker_joins_a_running_jobs_study(sqlite_db: RecipeDB):
    job = submit(sqlite_db, n_trials=3)
    owner = sqlite_db.claim_job("owner", lease_s=600)  # the job's own worker, idle for now
    helper = Worker(sqlite_db, device="cpu", worker_id="helper", cache_dir=False)
    assert helper.join(job.id) == 3  # it ran every trial, then stopped at n_trials
    joined = sqlite_db.get_job(job.id)
    assert (joined.status, joined.worker_id, joined.recipe_id) == ("running", "owner", None)  # no recipe from a helper
    assert len(finished_trials(sqlite_db, job.study_name)) == 3

    done = Worker(sqlite_db, device="cpu", worker_id="owner", cache_dir=False).run_job(owner)
    assert (done.status, done.progress["trials_done"]) == ("succeeded", 3)  # it only validated the helper's trials
    assert len(finished_trials(sqlite_db, job.study_name)) == 3  # nothing was left to run
    with pytest.raises(JobStateError, match="only a running job can be joined"):
        helper.join(job.id)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_killed_worker_is_requeued_and_the_job_completes(backend: str, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'killed.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    db = RecipeDB(url)
    job = submit(db, n_trials=12)
    command = [sys.executable, "-m", "autoaccel.service.worker", "--db", url, "--device", "cpu", "--lease", "3"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "first-worker.log"
    with log.open("w") as out:
        first = subprocess.Popen([*command, "--poll", "0.2"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: first.poll() is not None or db.get_job(job.id).progress.get("trials_done", 0) >= 1)
    finally:
        first.send_signal(signal.SIGKILL)  # mid-job: no chance to release the job
        first.wait(timeout=30)
    before = finished_trials(db, job.study_name)
    orphaned = db.get_job(job.id)
    assert orphaned.status == "running" and orphaned.attempts == 1, log.read_text()[-3000:]
    assert 1 <= len(before) < 12

    second = Worker(db, device="cpu", worker_id="second", lease_s=3, poll_s=0.2, cache_dir=False)
    give_up = threading.Event()
    timer = threading.Timer(180, give_up.set)
    timer.start()
    try:
        assert second.run(max_jobs=1, stop=give_up) == 1  # claims the job once its lease has expired
    finally:
        timer.cancel()
    done = db.get_job(job.id)
    assert (done.status, done.worker_id, done.attempts) == ("succeeded", "second", 2), done.error
    after = finished_trials(db, job.study_name)
    assert {n: after[n] for n in before} == before  # the killed worker's finished trials are kept
    assert len(after) >= 12 and done.progress["trials_done"] == len(after)
    db.close()

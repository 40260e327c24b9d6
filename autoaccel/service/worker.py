"""Search workers: claim queued jobs, run the search, report progress, honour cancellation.

A `Worker` polls the database (`RecipeDB.claim_job`, safe with many workers), loads the job's model, runs
`autoaccel.search.search` on the job's study (trials and the validated recipe go to the same database), and renews
its lease from a thread and after every trial. After each trial it stores the progress and checks for cancellation. A
worker that dies stops renewing; once the lease expires the job is requeued and the next worker continues the same
study, keeping the finished trials. `Worker.join` adds trials to a running job's study from another process.

Model names: Hub ids and aliases (`autoaccel.aliases.resolve`), loaded with ``DiffusionPipeline.from_pretrained``
from safetensors only. ``tiny:<kind>`` (e.g. ``tiny:flux``) is a TEST-ONLY scheme: a tiny random-weight pipeline from
`autoaccel.testing.tiny_pipeline`, for exercising the service without a GPU or a download.

Run one with ``autoaccel worker [--db URL] [--device cuda:0]`` or ``python -m autoaccel.service.worker``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..db import DatabaseError, RecipeDB
from ..db.jobs import JobInfo, JobStateError

logger = logging.getLogger("autoaccel.service.worker")

DEFAULT_LEASE_S = 60.0
DEFAULT_POLL_S = 5.0
TINY_SCHEME = "tiny:"
FINISHED_TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL")


class JobCancelled(Exception):
    """Cancellation of the running job was requested."""


class LeaseLost(Exception):
    """This worker no longer holds the job (its lease expired and the job was requeued or finished)."""


def load_pipeline(
    model: str, *, revision: str | None = None, device: str = "cpu", dtype: str | None = None
) -> tuple[Any, str]:
    """``(pipeline on device, canonical model id)`` for a job's model.

    ``tiny:<kind>`` is test-only (`autoaccel.testing.tiny_pipeline`); anything else goes through
    `autoaccel.aliases.resolve` and ``DiffusionPipeline.from_pretrained(..., use_safetensors=True)``: no pickles.
    """
    if model.startswith(TINY_SCHEME):  # TEST-ONLY: tiny random weights, never a real model
        from ..testing import tiny_pipeline

        pipe, model_id = tiny_pipeline(model.removeprefix(TINY_SCHEME)), model
    else:
        import torch
        from diffusers import DiffusionPipeline

        from ..aliases import resolve

        model_id, source = resolve(model)
        kwargs: dict[str, Any] = {"use_safetensors": True}
        if revision:
            kwargs["revision"] = revision
        if dtype:
            kwargs["torch_dtype"] = getattr(torch, dtype)
        pipe = DiffusionPipeline.from_pretrained(str(source), **kwargs)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, model_id


def study_progress(study: Any, n_trials: int) -> dict[str, Any]:
    """The progress a job reports: finished trials, the best speedup within the budget and the Pareto front."""
    import optuna

    finished = study.get_trials(deepcopy=False, states=_finished_states())
    feasible = [
        t
        for t in finished
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.values
        and all(c <= 0 for c in t.user_attrs.get("constraints", [1.0]))
    ]
    feasible_ids = {t._trial_id for t in feasible}
    pareto = sorted((t for t in study.best_trials if t._trial_id in feasible_ids), key=lambda t: -t.values[0])
    return {
        "trials_done": len(finished),
        "n_trials": n_trials,
        "best_speedup": max((t.values[0] for t in feasible), default=None),
        "pareto": [
            {
                "trial": t.number,
                "speedup": t.values[0],
                "quality": t.values[1] if len(t.values) > 1 else None,
                "methods": (t.user_attrs.get("recipe") or {}).get("methods", []),
            }
            for t in pareto
        ],
    }


def _finished_states() -> tuple[Any, ...]:
    import optuna

    return tuple(getattr(optuna.trial.TrialState, name) for name in FINISHED_TRIAL_STATES)


class _Lease:
    """Renews a job's lease every ``lease_s / 3`` seconds from a daemon thread while the job runs."""

    def __init__(self, db: RecipeDB, job_id: int, worker_id: str, lease_s: float) -> None:
        self.db, self.job_id, self.worker_id, self.lease_s = db, job_id, worker_id, lease_s
        self.state = "ok"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-job-{job_id}", daemon=True)

    def renew(self, progress: Mapping[str, Any] | None = None) -> str:
        try:
            state = self.db.heartbeat_job(self.job_id, self.worker_id, lease_s=self.lease_s, progress=progress)
        except DatabaseError as e:  # keep going: the next renewal may get through before the lease expires
            logger.warning("job %d: cannot renew the lease: %s", self.job_id, e)
            return self.state
        if self.state != "lost":
            self.state = state
        return self.state

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            self.renew()

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """Runs search jobs from the database.

    Args:
        db: The database the service uses (PostgreSQL for workers on several machines).
        device: Where searches run (default ``cuda`` when available, else ``cpu``). Jobs that ask for another device
            are left to other workers.
        worker_id: Name in the job rows (default ``<host>-<pid>``).
        lease_s: A claimed job is requeued when its worker has not renewed the lease for this long.
        poll_s: Seconds between polls of an empty queue (jittered by +-50%).
        cache_dir: Baseline cache folder of the searches (None: the default; False: off).

    Example:
        >>> Worker(RecipeDB("postgresql://..."), device="cuda:0").run()
    """

    def __init__(
        self,
        db: RecipeDB,
        *,
        device: str | None = None,
        worker_id: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        poll_s: float = DEFAULT_POLL_S,
        cache_dir: Any = None,
    ) -> None:
        if lease_s <= 0 or poll_s <= 0:
            raise ValueError(f"lease_s and poll_s must be positive, got {lease_s} and {poll_s}")
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.db = db
        self.device = device
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.cache_dir = cache_dir
        self.devices = sorted({device, device.split(":")[0]})

    # -- the queue -------------------------------------------------------------------------------------------------
    def run(self, *, max_jobs: int | None = None, stop: threading.Event | None = None, idle_exit: bool = False) -> int:
        """Claims and runs jobs until ``stop`` is set, ``max_jobs`` have run, or (``idle_exit``) the queue is empty.

        Returns:
            How many jobs it ran.
        """
        stop = stop or threading.Event()
        done = 0
        while not stop.is_set() and (max_jobs is None or done < max_jobs):
            try:
                job = self.run_once()
            except DatabaseError as e:  # the database is down: keep polling, the jobs wait there
                logger.error("%s; retrying", e)
                stop.wait(self.poll_s)
                continue
            if job is not None:
                done += 1
            elif idle_exit:
                break
            else:
                stop.wait(self.poll_s * random.uniform(0.5, 1.5))
        return done

    def run_once(self) -> JobInfo | None:
        """Claims one job and runs it; returns the job as it ended, or None when the queue is empty."""
        job = self.db.claim_job(self.worker_id, lease_s=self.lease_s, devices=self.devices)
        if job is None:
            return None
        logger.info("claimed job %d (attempt %d): %s", job.id, job.attempts, job.model_id)
        return self.run_job(job)

    def run_job(self, job: JobInfo) -> JobInfo:
        """Runs a claimed job to its end: succeeded, failed or cancelled (or left alone when the lease was lost).

        A ``KeyboardInterrupt`` puts the job back in the queue and propagates.
        """
        with _Lease(self.db, job.id, self.worker_id, self.lease_s) as lease:
            try:
                recipe_id, progress = self._search(job, lease)
            except JobCancelled:
                self._finish(job, "cancelled")
            except LeaseLost:
                logger.warning("job %d: lease lost (another worker may run it now); stopping", job.id)
            except KeyboardInterrupt:
                self.db.release_job(job.id, self.worker_id)
                logger.warning("job %d put back in the queue", job.id)
                raise
            except Exception as e:  # a failed job must not stop the worker
                logger.exception("job %d failed", job.id)
                self._finish(job, "failed", error=f"{type(e).__name__}: {e}")
            else:
                self._finish(job, "succeeded", recipe_id=recipe_id, progress=progress)
        return self.db.get_job(job.id)

    def _finish(self, job: JobInfo, status: str, **fields: Any) -> None:
        try:
            held = self.db.finish_job(job.id, self.worker_id, status=status, **fields)
        except DatabaseError as e:  # the lease will expire and the job be requeued
            logger.error("job %d: cannot record that it %s: %s", job.id, status, e)
            return
        if held:
            logger.info(
                "job %d %s%s", job.id, status, f" (recipe {fields['recipe_id']})" if "recipe_id" in fields else ""
            )
        else:
            logger.warning("job %d: %s, but its lease was lost meanwhile; the result is not recorded", job.id, status)

    def join(self, job_id: int) -> int:
        """Adds trials to a running job's study until it has ``n_trials`` or stops running; returns trials run here.

        The joining worker must run on the same hardware and software stack as the job's worker (the study records
        one hardware profile, and speedups are only comparable on one machine type). It stores no recipe: the job's
        own worker validates the best trial at the end.

        Raises:
            JobStateError: The job is not running.
        """
        job = self.db.get_job(job_id)
        if job.status != "running":
            raise JobStateError(f"search job {job_id} is {job.status}; only a running job can be joined")
        n_trials = int(job.request["n_trials"])
        ran = 0

        def on_trial(study: Any, trial: Any) -> None:
            nonlocal ran
            ran += 1
            if self.db.get_job(job_id).status != "running" or _finished(study) >= n_trials:
                study.stop()

        self._run_search(job, on_trial, validate=False, warm_start=False)
        return ran

    # -- one search ------------------------------------------------------------------------------------------------
    def _search(self, job: JobInfo, lease: _Lease) -> tuple[int | None, dict[str, Any]]:
        n_trials = int(job.request["n_trials"])

        def on_trial(study: Any, trial: Any) -> None:
            state = lease.renew(study_progress(study, n_trials))
            if state == "cancel":
                raise JobCancelled
            if state == "lost":
                raise LeaseLost
            if _finished(study) >= n_trials:  # joined workers count too
                study.stop()

        state = lease.renew()  # cancelled or requeued between the claim and now?
        if state != "ok":
            raise JobCancelled if state == "cancel" else LeaseLost
        result = self._run_search(job, on_trial)
        progress = study_progress(result.study, n_trials)
        if result.recipe is None:
            progress["note"] = "no trial met the budget after validation" + (
                f": {'; '.join(result.rejected)}" if result.rejected else ""
            )
        return result.recipe_id, progress

    def _run_search(self, job: JobInfo, on_trial: Callable[[Any, Any], None], **options: Any) -> Any:
        from ..search import search
        from ..workload import Workload

        request = job.request
        workload = Workload.from_dict(request["workload"]) if request.get("workload") else None
        pipe, model_id = load_pipeline(
            request["model"],
            revision=request.get("revision"),
            device=self.device,
            dtype=workload.dtype if workload is not None else None,
        )
        remaining = max(0, int(request["n_trials"]) - self._finished_trials(job.study_name))
        return search(
            pipe,
            request["budget"],
            workload=workload,
            model_id=model_id,
            revision=request.get("revision"),
            n_trials=remaining,
            timeout=request.get("timeout_s"),
            db=self.db,
            study_name=job.study_name,
            include=request.get("include"),
            exclude=tuple(request.get("exclude") or ()),
            seed=request.get("seed"),
            repeats=int(request.get("repeats", 3)),
            validation_repeats=int(request.get("validation_repeats", 5)),
            cache_dir=self.cache_dir,
            heartbeat_interval=max(1, int(self.lease_s / 3)),
            grace_period=max(2, int(self.lease_s)),
            on_trial=on_trial,
            **options,
        )

    def _finished_trials(self, study_name: str) -> int:
        import optuna

        storage = self.db.optuna_storage()
        try:
            return _finished(optuna.load_study(study_name=study_name, storage=storage))
        except KeyError:  # not started yet
            return 0
        finally:
            storage.engine.dispose()


def _finished(study: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=_finished_states()))


if __name__ == "__main__":
    import typer

    from ..cli._service import worker_command

    typer.run(worker_command)

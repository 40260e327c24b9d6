"""The command line: every command's happy path and its errors (a message and a non-zero exit, no traceback)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time

import optuna
import pytest
from typer.testing import CliRunner

from autoaccel.cli import app
from autoaccel.recipes import Recipe
from autoaccel.testing import tiny_pipeline

from ._search_worker import WORKLOAD

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    tiny_pipeline("flux").save_pretrained(root / "pipe")
    WORKLOAD.to_file(root / "workload.json")
    return root


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_methods_lists_every_method():
    result = invoke("methods")
    assert result.exit_code == 0
    for name in ("block_cache", "taylorseer", "cfg_truncation", "sparse_attention"):
        assert name in result.output


def test_search_then_recipes_commands(env):
    db = f"sqlite:///{env / 'r.db'}"
    result = invoke(
        "search",
        env / "pipe",
        "--budget",
        "lpips<0.05",
        "--trials",
        "5",
        "--workload",
        env / "workload.json",
        "--db",
        db,
        "--study",
        "cli",
        "--out",
        env / "out",
        "-m",
        "steps",
        "-m",
        "cfg_truncation",
    )
    assert result.exit_code == 0, result.output
    assert "Pareto front" in result.output
    assert (env / "out" / "cli.json").exists() and (env / "out" / "cli-pareto.png").read_bytes()[:4] == b"\x89PNG"
    recipe = Recipe.load(env / "out" / "cli.json")

    listed = invoke("recipes", "list", "--db", db)
    assert listed.exit_code == 0 and "1 recipes" in listed.output
    shown = invoke("recipes", "show", "1", "--db", db)
    assert Recipe.from_json(shown.output) == recipe
    assert invoke("recipes", "export", "1", env / "exported.json", "--db", db).exit_code == 0
    assert Recipe.load(env / "exported.json") == recipe
    imported = invoke("recipes", "import", env / "exported.json", "--db", db)
    assert imported.exit_code == 0 and "as recipe 2" in imported.output
    missing = invoke("recipes", "show", "99", "--db", db)
    assert missing.exit_code == 1 and "99" in missing.output


def test_search_with_an_impossible_budget_fails_clearly(env):
    result = invoke(
        "search",
        env / "pipe",
        "--budget",
        "lpips<0.0000001",
        "--trials",
        "2",
        "--workload",
        env / "workload.json",
        "--db",
        f"sqlite:///{env / 'r2.db'}",
        "--out",
        env / "out2",
        "-m",
        "steps",
    )
    assert result.exit_code == 1
    assert "no recipe met lpips<1e-07" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "/nonexistent/model", "--budget", "lpips<0.1"], "cannot load"),
        (["search", "{pipe}", "--budget", "lpips>0.1"], "lower"),
        (
            ["search", "{pipe}", "--budget", "lpips<0.1", "--db", "postgresql://me:secret@127.0.0.1:1/x"],
            "database error",
        ),
        (["recipes", "import", "/nonexistent.json"], "cannot read"),
    ],
)
def test_bad_input_gives_a_message_and_exit_1(env, args, message):
    result = invoke(*[a.replace("{pipe}", str(env / "pipe")) for a in args])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "secret" not in result.output


def test_db_upgrade(tmp_path):
    result = invoke("db", "upgrade", "--db", f"sqlite:///{tmp_path / 'new.db'}")
    assert result.exit_code == 0 and "revision 0003" in " ".join(result.output.split())


def test_pull_without_a_reachable_hub_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = invoke("pull", "someone/missing-recipe")
    assert result.exit_code == 1
    assert "error" in result.output.lower()


def test_workload_file_is_json(env):
    assert json.loads((env / "workload.json").read_text())["prompts"] == WORKLOAD.prompts


def test_ctrl_c_keeps_finished_trials_and_the_study_resumes(env):
    db = f"sqlite:///{env / 'ctrl-c.db'}"
    args = ["--budget", "lpips<0.05", "--workload", env / "workload.json", "--db", db, "--study", "ctrl-c"]
    args += ["--out", env / "out-ctrl-c", "-m", "steps", "-m", "cfg_truncation"]
    cmd = [sys.executable, "-c", "from autoaccel.cli import app; app()", "search", env / "pipe", "--trials", "500"]
    proc = subprocess.Popen([str(a) for a in cmd + args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage = optuna.storages.RDBStorage(db)
    finished: list[optuna.trial.FrozenTrial] = []
    deadline = time.monotonic() + 240
    while len(finished) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(Exception):  # the study may not exist yet
            finished = [
                t for t in optuna.load_study(study_name="ctrl-c", storage=storage).trials if t.state.is_finished()
            ]
    assert len(finished) >= 2, "the search finished no trial in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--study ctrl-c" in err and "Traceback" not in err

    kept = {t.number: t for t in optuna.load_study(study_name="ctrl-c", storage=storage).trials}
    for t in finished:
        assert kept[t.number].state == t.state and kept[t.number].values == t.values
    resumed = invoke("search", env / "pipe", "--trials", "2", *args)
    assert resumed.exit_code in (0, 1), resumed.output  # 1: no recipe met the budget, still a clean end
    trials = optuna.load_study(study_name="ctrl-c", storage=storage).trials
    before = [t for t in kept.values() if t.state.is_finished()]  # the interrupted trial ended failed
    assert len([t for t in trials if t.state.is_finished()]) == len(before) + 2
    assert all(trials[n].values == t.values for n, t in kept.items() if t.state.is_finished())


def test_demo_uses_the_fastest_shipped_recipe_that_applies_here(monkeypatch, tmp_path):
    from autoaccel.methods import compile as compile_method
    from autoaccel.recipes import shipped

    monkeypatch.setenv("AUTOACCEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compile_method, "_has_cpp_compiler", lambda: False)  # the compiled recipe cannot apply
    result = invoke("demo", "--prompts", "1", "--repeats", "1")
    assert result.exit_code == 0, result.output
    assert "recipe steps" in result.output and "compile" not in result.output
    assert "speedup (median wall clock)" in result.output

    only_compiled = [p for p in shipped.DATA.glob("*.json") if "compile" in p.read_text()]
    assert only_compiled
    (tmp_path / "data").mkdir()
    for p in only_compiled:
        (tmp_path / "data" / p.name).write_text(p.read_text())
    monkeypatch.setattr(shipped, "DATA", tmp_path / "data")
    none = invoke("demo", "--prompts", "1", "--repeats", "1")
    assert none.exit_code == 1 and "applies here" in none.output


def test_without_verbose_only_optuna_trial_tracebacks_are_dropped(capsys):
    import logging

    from autoaccel.cli._common import setup_logging

    setup_logging(verbose=False)
    optuna.logging.disable_default_handler()  # as `autoaccel search` routes it
    optuna.logging.enable_propagation()
    try:
        raise RuntimeError("boom")
    except RuntimeError as e:
        logging.getLogger("optuna.study._optimize").warning("Trial 3 failed", exc_info=e)
        logging.getLogger("autoaccel.service").error("unhandled error", exc_info=e)
    err = capsys.readouterr().err
    assert "Trial 3 failed" in err and "unhandled error" in err
    assert err.count("Traceback") == 1 and err.index("Traceback") > err.index("unhandled error")

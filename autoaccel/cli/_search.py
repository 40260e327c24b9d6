"""`autoaccel search`: find, validate and store the fastest recipe that meets a budget, with a live display."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import app
from ._common import console, err_console, friendly_errors, setup_logging


def _load_pipeline(model: str, device: str | None) -> tuple[Any, str]:
    from ..aliases import resolve
    from ..auto import _load

    model_id, source = resolve(model)
    pipe = _load(model_id, source, {})
    if device:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, model_id


def _workload(
    pipe: Any,
    workload: Path | None,
    prompts: str | None,
    steps: int | None,
    height: int | None,
    width: int | None,
    seeds: int,
) -> Any:
    from ..workload import Workload

    if workload is not None:
        base = Workload.from_file(workload)
        update = {k: v for k, v in (("num_inference_steps", steps), ("height", height), ("width", width)) if v}
        return base.model_copy(update=update) if update else base
    fields = {k: v for k, v in (("num_inference_steps", steps), ("height", height), ("width", width)) if v}
    return Workload.for_pipeline(pipe, prompts=prompts, seeds=list(range(seeds)), **fields)


def _pareto_table(result: Any) -> Table:
    table = Table(title=f"Pareto front (budget {result.budget})")
    for column in ("trial", "speedup", f"{result.study.metric_names[1]}", "methods"):
        table.add_column(column)
    for t in result.pareto:
        methods = (
            ", ".join(
                f"{m['name']}({', '.join(f'{k}={_fmt(v)}' for k, v in m['params'].items() if k != 'mag_ratios')})"
                for m in t.user_attrs.get("recipe", {}).get("methods", [])
            )
            or "(baseline)"
        )
        table.add_row(str(t.number), f"{t.values[0]:.2f}x", f"{t.values[1]:.4g}", methods)
    return table


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@app.command("search")
def search_command(
    model: Annotated[str, typer.Argument(help="Hub id, local pipeline folder or alias (e.g. fashion-flux).")],
    budget: Annotated[str, typer.Option("--budget", "-b", help='Quality budget, e.g. "lpips<0.1".')],
    trials: Annotated[int, typer.Option(help="Trials to run in this process.")] = 30,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    prompts: Annotated[str | None, typer.Option(help="Prompt set name or .txt/.jsonl file.")] = None,
    steps: Annotated[int | None, typer.Option(help="Inference steps of the workload.")] = None,
    height: Annotated[int | None, typer.Option()] = None,
    width: Annotated[int | None, typer.Option()] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per prompt.")] = 1,
    workload: Annotated[Path | None, typer.Option(help="Workload JSON/YAML file.")] = None,
    methods: Annotated[list[str] | None, typer.Option("--methods", "-m", help="Only these methods.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", "-x", help="Never these methods.")] = None,
    device: Annotated[str | None, typer.Option(help="Device, e.g. cuda:0 (default: where the pipeline loads).")] = None,
    db: Annotated[
        str | None, typer.Option(help="Database URL (default AUTOACCEL_DB_URL or the user database).")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name: resume it, or join it from several workers.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the recipe JSON and the Pareto plot.")] = Path("autoaccel-out"),
    seed: Annotated[int | None, typer.Option(help="Sampler seed.")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Search the fastest recipe that meets BUDGET for MODEL on this machine, validate it, store it."""
    setup_logging(verbose)
    with friendly_errors():
        import optuna

        from ..budget import Budget

        optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
        optuna.logging.disable_default_handler()  # through our handler, which keeps a failed trial to one line
        optuna.logging.enable_propagation()
        from ..db import RecipeDB
        from ..search import search
        from ..search.plot import pareto_png

        parsed = Budget.parse(budget)
        recipe_db = RecipeDB(db)
        pipe, model_id = _load_pipeline(model, device)
        wl = _workload(pipe, workload, prompts, steps, height, width, seeds)
        name = study or f"{model_id.replace('/', '--')}-{int(time.time())}"
        started = time.monotonic()
        progress = Progress(
            TextColumn("[bold]trial"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
        )
        best = {"speedup": 0.0}

        def on_trial(study_obj: Any, trial: Any) -> None:
            feasible = trial.values and all(c <= 0 for c in trial.user_attrs.get("constraints", [1]))
            if feasible:
                best["speedup"] = max(best["speedup"], trial.values[0])
            text = f"best within budget {best['speedup']:.2f}x" if best["speedup"] else "no trial within budget yet"
            progress.update(task, advance=1, description=f"{text} | last: {trial.state.name.lower()}")

        with progress:
            task = progress.add_task("starting (baseline outputs, calibration)", total=trials)
            try:
                result = search(
                    pipe,
                    parsed,
                    workload=wl,
                    model_id=model_id,
                    n_trials=trials,
                    timeout=timeout,
                    db=recipe_db,
                    study_name=name,
                    include=methods or None,
                    exclude=exclude or (),
                    seed=seed,
                    on_trial=on_trial,
                )
            except KeyboardInterrupt:
                err_console.print(
                    f"[yellow]interrupted[/yellow]: finished trials are stored; resume with "
                    f"--study {name} --db {recipe_db.url}"
                )
                raise typer.Exit(130) from None
        console.print(_pareto_table(result))
        out.mkdir(parents=True, exist_ok=True)
        points = [
            (t.values[1], t.values[0], all(c <= 0 for c in t.user_attrs.get("constraints", [1])))
            for t in result.study.trials
            if t.values
        ]
        clause = parsed.clauses[0]
        plot = pareto_png(
            points,
            [(t.values[1], t.values[0]) for t in result.pareto],
            metric=clause.metric,
            bound=clause.bound,
            path=out / f"{name}-pareto.png",
            title=f"{model_id}: {parsed}",
        )
        console.print(
            f"{len(result.study.trials)} trials in {time.monotonic() - started:.0f}s; "
            f"95% of the best speedup after {result.trials_to_95} trials; Pareto plot: {plot}"
        )
        if result.recipe is None:
            err_console.print(
                f"[red]no recipe met {parsed}[/red] after validation: "
                + ("; ".join(result.rejected) or "no trial met the budget")
                + ". Try a looser budget, more trials, or other methods."
            )
            raise typer.Exit(1)
        path = result.recipe.save(out / f"{name}.json")
        m = result.measurement
        console.print(f"[green]recipe[/green] {path} (database id {result.recipe_id}): {m.summary()}")

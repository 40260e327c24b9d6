"""`autoaccel push` / `autoaccel pull`: recipes on the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app
from ._common import console, friendly_errors


@app.command("push")
def push_command(
    recipe: Annotated[Path, typer.Argument(help="Recipe JSON file.")],
    repo_id: Annotated[str, typer.Argument(help="Target repository, e.g. me/flux-dev-h100-lpips01.")],
    token: Annotated[str | None, typer.Option(help="Hub token (default: HF_TOKEN or the saved login).")] = None,
    private: Annotated[bool, typer.Option(help="Create the repository as private.")] = False,
    revision: Annotated[str | None, typer.Option(help="Branch to push to.")] = None,
    pareto_plot: Annotated[Path | None, typer.Option(help="Pareto plot PNG to include.")] = None,
) -> None:
    """Publish a recipe (JSON, model card, optional Pareto plot) to a Hub model repository."""
    with friendly_errors():
        from ..hub import cli_push

        console.print(
            cli_push(recipe, repo_id, token=token, private=private, revision=revision, pareto_plot=pareto_plot)
        )


@app.command("pull")
def pull_command(
    repo_id: Annotated[str, typer.Argument(help="Recipe repository on the Hub.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of printing.")] = None,
    revision: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Download and validate a recipe (only its JSON file is ever read)."""
    with friendly_errors():
        from ..hub import cli_pull

        typer.echo(cli_pull(repo_id, output, revision=revision))

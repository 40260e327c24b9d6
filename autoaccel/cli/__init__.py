"""The `autoaccel` command line (typer + rich). Each command group lives in its own module."""

from __future__ import annotations

import typer

from ._common import console

app = typer.Typer(
    name="autoaccel",
    help="Training-free acceleration of diffusion pipelines under a quality budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command("methods")
def methods_command() -> None:
    """List the acceleration methods, their families and the papers they follow."""
    from rich.table import Table

    import autoaccel.methods as M

    table = Table(title="Acceleration methods")
    table.add_column("name", no_wrap=True)
    for column in ("group", "families", "summary", "follows"):
        table.add_column(column, overflow="fold")
    for name in M.available():
        spec = M.get(name)
        table.add_row(name, spec.group or "-", ", ".join(spec.families), spec.summary, spec.paper)
    console.print(table)


def _register() -> None:
    from . import _demo, _hub, _recipes, _search, _service  # noqa: F401  (modules add their commands to `app`)


_register()

__all__ = ["app"]

"""`autoaccel recipes ...` and `autoaccel db upgrade`: the recipe database from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import app
from ._common import console, friendly_errors

recipes_app = typer.Typer(help="List, show, export and import stored recipes.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the recipe database.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")
app.add_typer(db_app, name="db")

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default AUTOACCEL_DB_URL or the user DB).")]


@recipes_app.command("list")
def list_command(
    db: DbOption = None,
    model: Annotated[str | None, typer.Option(help="Only recipes for this model id.")] = None,
    hardware: Annotated[str | None, typer.Option(help="Only recipes for this hardware key.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """List stored recipes, newest first."""
    with friendly_errors():
        from ..db import RecipeDB

        rows, total = RecipeDB(db).list_recipes(model_id=model, hardware_key=hardware, limit=limit, offset=offset)
        table = Table(title=f"{total} recipes")
        for column in ("id", "model", "hardware", "budget", "speedup", "source", "created"):
            table.add_column(column, overflow="fold")
        for r in rows:
            speedup = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
            table.add_row(
                str(r.id),
                r.model_id,
                r.hardware_key or "-",
                r.budget or "-",
                speedup,
                r.source,
                r.created_at.strftime("%Y-%m-%d %H:%M"),
            )
        console.print(table)


@recipes_app.command("show")
def show_command(recipe_id: int, db: DbOption = None) -> None:
    """Print a stored recipe as JSON."""
    with friendly_errors():
        from ..db import RecipeDB

        typer.echo(RecipeDB(db).get_recipe(recipe_id).to_json())


@recipes_app.command("export")
def export_command(recipe_id: int, path: Path, db: DbOption = None) -> None:
    """Write a stored recipe to a JSON file."""
    with friendly_errors():
        from ..db import RecipeDB

        console.print(f"wrote {RecipeDB(db).get_recipe(recipe_id).save(path)}")


@recipes_app.command("import")
def import_command(path: Path, db: DbOption = None) -> None:
    """Validate a recipe file and store it (source 'import')."""
    with friendly_errors():
        from ..db import RecipeDB
        from ..recipes import Recipe

        recipe = Recipe.load(path)
        recipe_id = RecipeDB(db).add_recipe(recipe, validated=False, source="import")
        console.print(f"imported {path} as recipe {recipe_id}")


@db_app.command("upgrade")
def upgrade_command(db: DbOption = None) -> None:
    """Create or upgrade the database schema to this version of autoaccel."""
    with friendly_errors():
        from ..db import current, redact_url, upgrade
        from ..db.engine import normalize_url

        url = normalize_url(db)
        upgrade(url)
        console.print(f"{redact_url(url)} is at schema revision {current(url)}")

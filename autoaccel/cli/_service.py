"""`autoaccel serve`, `autoaccel worker` and `autoaccel tokens ...`: the recipe service, its workers and its tokens."""

from __future__ import annotations

import logging
import signal
from typing import Annotated, Any

import typer
from rich.table import Table

from . import app
from ._common import console, err_console, friendly_errors, setup_logging

tokens_app = typer.Typer(help="Create, revoke and list the service's bearer tokens.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default AUTOACCEL_DB_URL or the user DB).")]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command("serve")
def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to bind; the default only accepts local connections.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    db: DbOption = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the recipe API (under /v1, docs at /docs) with uvicorn."""
    setup_logging(verbose)
    if not verbose:  # the response says `fallback`; a warning per request would flood the log
        logging.getLogger("autoaccel.db").setLevel(logging.ERROR)
    with friendly_errors():
        import uvicorn

        from ..db import RecipeDB
        from ..service import Settings, create_app

        settings = Settings(db_url=db) if db else Settings()
        recipe_db = RecipeDB(settings.db_url)  # a bad URL or an old schema is reported here, not by uvicorn
        if host not in LOOPBACK:
            err_console.print(
                f"[yellow]binding {host}: the API is reachable from other machines; "
                "put it behind TLS (a reverse proxy) so tokens do not travel in clear[/yellow]"
            )
        console.print(f"serving {recipe_db.url} on http://{host}:{port}/v1 (docs: http://{host}:{port}/docs)")
        try:
            uvicorn.run(
                create_app(settings, db=recipe_db),
                host=host,
                port=port,
                access_log=access_log,
                log_level="info" if verbose else "warning",
            )
        finally:
            recipe_db.close()


def _interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@app.command("worker")
def worker_command(
    db: DbOption = None,
    device: Annotated[
        str | None, typer.Option(help="Device for searches (default: cuda if available, else cpu).")
    ] = None,
    join: Annotated[
        int | None, typer.Option(help="Add trials to this running job's study instead of claiming jobs.")
    ] = None,
    lease: Annotated[float, typer.Option(min=1.0, help="Seconds without a heartbeat before a job is requeued.")] = 60.0,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between polls of an empty queue.")] = 5.0,
    max_jobs: Annotated[int | None, typer.Option(min=1, help="Exit after this many jobs.")] = None,
    exit_when_idle: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
    worker_id: Annotated[str | None, typer.Option(help="Name in the job rows (default host-pid).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run queued search jobs from the database (Ctrl-C or SIGTERM puts the running job back in the queue)."""
    setup_logging(verbose)  # claims and outcomes are logged at INFO
    with friendly_errors():
        from ..db import RecipeDB
        from ..service.worker import Worker

        _interrupt_on_sigterm()
        worker = Worker(RecipeDB(db), device=device, worker_id=worker_id, lease_s=lease, poll_s=poll)
        if join is not None:
            ran = worker.join(join)
            console.print(f"ran {ran} trials for job {join}")
            return
        console.print(f"worker {worker.worker_id} on {worker.device}: waiting for jobs in {worker.db.url}")
        ran = worker.run(max_jobs=max_jobs, idle_exit=exit_when_idle)
        console.print(f"ran {ran} jobs")


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="A unique name (who or what uses the token).")],
    admin: Annotated[bool, typer.Option(help="May also delete recipes.")] = False,
    db: DbOption = None,
) -> None:
    """Create a token and print it once (only its sha256 is stored)."""
    with friendly_errors():
        from ..db import RecipeDB
        from ..service.security import create_token

        token, info = create_token(RecipeDB(db), name, admin=admin)
        err_console.print(
            f"token {info.name!r}{' (admin)' if admin else ''} created; store it now, it is not shown again:"
        )
        typer.echo(token)


@tokens_app.command("revoke")
def tokens_revoke(name: str, db: DbOption = None) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    with friendly_errors():
        from ..db import RecipeDB

        info = RecipeDB(db).revoke_token(name)
        console.print(f"token {info.name!r} revoked ({info.revoked_at:%Y-%m-%d %H:%M} UTC)")


@tokens_app.command("list")
def tokens_list(db: DbOption = None) -> None:
    """List tokens (names and states, never the tokens)."""
    with friendly_errors():
        from ..db import RecipeDB

        table = Table(title="tokens")
        for column in ("name", "admin", "created", "revoked"):
            table.add_column(column)
        for t in RecipeDB(db).list_tokens():
            revoked = f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "-"
            table.add_row(t.name, "yes" if t.admin else "no", f"{t.created_at:%Y-%m-%d %H:%M}", revoked)
        console.print(table)

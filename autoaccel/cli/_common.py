"""Shared CLI plumbing: the console and turning library errors into a clear message and a non-zero exit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.logging import RichHandler

from ..errors import AutoAccelError

console = Console()
err_console = Console(stderr=True)


class _NoTrialTraceback(logging.Filter):
    """Drop the traceback Optuna attaches to a failed trial's record: one line per failed trial (the traceback only
    with ``--verbose``). Other loggers keep theirs (the service logs an unhandled error's traceback on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("optuna"):
            record.exc_info = record.exc_text = None
        return True


def setup_logging(verbose: bool = False) -> None:
    handler = RichHandler(console=err_console, show_path=False)
    if not verbose:
        handler.addFilter(_NoTrialTraceback())
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR, format="%(message)s", handlers=[handler], force=True
    )
    logging.getLogger("autoaccel").setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:  # loading bars of diffusers/transformers would bury the command's own output
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Print library errors as one clear line and exit 1 (2 for bad usage); never a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    except AutoAccelError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    except (OSError, ValueError) as e:
        err_console.print(f"[red]error:[/red] {type(e).__name__}: {e}")
        raise typer.Exit(1) from None

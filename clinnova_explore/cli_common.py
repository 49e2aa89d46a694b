"""Pieces shared by the ``clinnova-explore`` command modules: the console, the catalog option,
progress bars and one-line user errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from clinnova_explore.catalog import Catalog, CatalogError

__all__ = ["CatalogOpt", "console", "load_catalog", "progress", "user_errors"]

console = Console()

CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        "-c",
        help="Catalog YAML (default: $CLINNOVA_CATALOG or the project's data_catalog.yaml).",
    ),
]


@contextmanager
def progress() -> Iterator[Callable[[str, int, int], None]]:
    """Yield a ``(stage, done, total)`` callback drawing one bar per stage."""
    bars = Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=max(total, 1))
        bars.update(tasks[stage], completed=done, total=max(total, 1))

    with bars:
        yield update


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a problem in the user's input as one clear line and exit 2, not as a traceback."""
    from clinnova_explore.backends import BackendError
    from clinnova_explore.harmonize import HarmonizeError
    from clinnova_explore.harmonize.spec import SpecError

    try:
        yield
    except (
        CatalogError,
        BackendError,
        HarmonizeError,
        SpecError,
        KeyError,
        ValueError,
        FileNotFoundError,
    ) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        # multi-line messages (e.g. every invalid field of a definition) become one line
        one_line = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
        console.print(f"[red]error:[/red] {one_line}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def load_catalog(catalog: Path | None) -> Catalog:
    with user_errors():
        return Catalog.load(catalog)

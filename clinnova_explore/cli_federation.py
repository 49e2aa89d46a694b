"""``clinnova-explore audit`` and ``clinnova-explore site``: a site's audit log and its server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from clinnova_explore.cli_common import CatalogOpt, console
from clinnova_explore.cli_common import load_catalog as _load
from clinnova_explore.cli_common import user_errors as _user_errors

if TYPE_CHECKING:
    from clinnova_explore.federated.audit import AuditLog

__all__ = ["audit_app", "site_app"]

audit_app = typer.Typer(
    help="Check and read a site's hash-chained audit log (what left the site, and refusals).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

SiteArg = Annotated[str, typer.Argument(help="Site id in the catalog, e.g. `basel`.")]


def _audit_log(site: str, catalog: Path | None) -> AuditLog:
    from clinnova_explore.federated.audit import AuditLog

    cat = _load(catalog)
    with _user_errors():
        entry = cat.site(site)
    return AuditLog(entry.audit_path(), site=entry.id)


@audit_app.command("verify")
def audit_verify(site: SiteArg, catalog: CatalogOpt = None) -> None:
    """Check a site's audit log: every entry's hash and its link to the entry before it.

    Prints `OK` with the number of entries and the hash of the last one (keep it elsewhere:
    a log cut short is a shorter valid chain), or names the first edited, deleted, inserted or
    reordered entry (line, sequence number, reason) and exits with status 1.

    **Examples**

        clinnova-explore audit verify basel

        clinnova-explore audit verify freiburg --catalog demo/data_catalog.yaml
    """
    log = _audit_log(site, catalog)
    check = log.verify()
    if check.ok:
        where = log.path if log.path.exists() else f"{log.path} (no entries yet)"
        console.print(
            f"[green]OK[/green] {log.site}: {check.entries} entries, head {check.head}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"log: {where}", highlight=False, soft_wrap=True)
        return
    console.print(
        f"[red]TAMPERED[/red] {log.site}: line {check.first_bad} (entry seq {check.entries}) "
        f"{check.reason}",
        highlight=False,
        soft_wrap=True,
    )
    intact = (
        f"the {check.entries - 1} entries before it are intact (head {check.head})"
        if check.entries > 1
        else "no entry before it"
    )
    console.print(
        f"log: {log.path}; {intact}. The site appends nothing more until the log is restored "
        "from a copy.",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(1)


@audit_app.command("show")
def audit_show(
    site: SiteArg,
    catalog: CatalogOpt = None,
    last: Annotated[
        int, typer.Option("--last", "-n", min=0, help="Show the last N entries (0: all).")
    ] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the entries as a JSON list, unchanged.")
    ] = False,
) -> None:
    """List a site's audit entries: when, who asked, which analysis, release or preview, and
    what left (table shapes and value names) or the rule that refused.

    Entries are shown as stored; run `audit verify` to check they are intact.

    **Examples**

        clinnova-explore audit show basel --last 10

        clinnova-explore audit show basel --json > basel_audit.json
    """
    from clinnova_explore.federated.audit import entries_frame

    log = _audit_log(site, catalog)
    with _user_errors():
        entries = log.tail(last) if last else log.entries()
    if as_json:
        typer.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    frame = entries_frame(entries)
    table = Table(title=f"audit log of {log.site}: {log.path}")
    for column in frame.columns:
        header = {"time": "time (UTC)", "released": "released / refused"}.get(column, column)
        table.add_column(header, no_wrap=column in ("seq", "time", "kind"), overflow="fold")
    for row in frame.itertuples(index=False):
        cells = [str(v) for v in row]
        when = cells[1]
        if when.endswith("+00:00"):
            cells[1] = when.removesuffix("+00:00").replace("T", " ")
        table.add_row(*cells)
    console.print(table)
    if not entries:
        console.print(f"no entries yet in {log.path}", highlight=False)


site_app = typer.Typer(
    help="Run a site's side of the federation.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

SITE_KEY_ENV = "CLINNOVA_SITE_KEY"


@site_app.command("serve")
def site_serve(
    site: Annotated[str, typer.Option("--site", "-s", help="The site id to serve.")],
    catalog: CatalogOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, help="Port (0: any free port).")] = 0,
) -> None:
    """Serve one site: answer coordinators' requests with checked payloads only.

    The process opens only this site's catalog entry, applies its disclosure policy and writes
    its audit log. Coordinators must present the shared secret from the environment variable
    `CLINNOVA_SITE_KEY`.

    **Examples**

        CLINNOVA_SITE_KEY=... clinnova-explore site serve --site basel --port 7401

        clinnova-explore site serve -c demo/data_catalog.yaml -s freiburg --host 0.0.0.0
    """
    key = os.environ.get(SITE_KEY_ENV, "")
    if not key:
        console.print(
            f"[red]error:[/red] set {SITE_KEY_ENV} to the secret coordinators use to connect "
            f"to site {site!r} (it is never read from the catalog)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    cat = _load(catalog)
    with _user_errors():
        entry = cat.site(site)
    from clinnova_explore.federated.process_runner import serve_site

    def ready(address: tuple[str, int]) -> None:
        console.print(
            f"site {site} listening on {address[0]}:{address[1]} "
            f"(audit log {entry.audit_path()}; Ctrl-C stops)",
            highlight=False,
            soft_wrap=True,
        )
        sys.stdout.flush()

    assert cat.path is not None
    with _user_errors():
        try:
            serve_site(cat.path, site, host=host, port=port, authkey=key.encode(), ready=ready)
        except KeyboardInterrupt:
            console.print(f"site {site} stopped")

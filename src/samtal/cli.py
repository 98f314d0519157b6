"""The `samtal` command line: a thin layer that parses options and calls the library."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, BinaryIO, NoReturn

import click
from rich.console import Console

from samtal.aggregate import aggregate as aggregate_events
from samtal.api import create_app, system_clock
from samtal.errors import SamtalError, UnknownZone, shorten
from samtal.events import decode_batch
from samtal.ingest import Report, import_lines
from samtal.records import dumps
from samtal.settings import DEFAULT_DATABASE_URL, Settings
from samtal.simulate import TrafficSettings, event_lines
from samtal.store import Store, open_store
from samtal.times import render
from samtal.times import zone as find_zone

DEFAULT_TZ = "Europe/Stockholm"


def _zone_option(value: str) -> str:
    try:
        find_zone(value)
    except UnknownZone as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="samtal")
def main() -> None:
    """samtal: call history for cloud phone systems."""


@main.command()
@click.argument("file", type=click.File("rb"), default="-")
@click.option(
    "--tz",
    default=DEFAULT_TZ,
    show_default=True,
    callback=lambda _ctx, _param, value: _zone_option(value),
    help="IANA time zone that record times are rendered in.",
)
def aggregate(file: BinaryIO, tz: str) -> None:
    """Aggregate events v1 (NDJSON, FILE or stdin) into call records, printed as a JSON array.

    Invalid lines are reported on stderr with their line numbers and the rest is still
    aggregated. Exit status: 0 when every line was valid, 1 when some were not, 2 on a usage
    error. Calls that have not stopped have no record; no call is closed for being idle.
    """
    # A bulk load allocates millions of objects that all live to the end: the cyclic garbage
    # collector would only rescan them again and again (about 7% of the run).
    gc.disable()
    decoded = decode_batch(file)
    for rejection in decoded.rejections:
        click.echo(str(rejection), err=True)
    invalid = len(decoded.rejections)
    out = sys.stdout.buffer
    zone = find_zone(tz)
    records = aggregate_events(decoded.events)
    out.write(b"[")
    for n, record in enumerate(records):
        out.write(b"\n" if n == 0 else b",\n")
        out.write(dumps(record.render(zone)))
    out.write(b"\n]\n" if records else b"]\n")
    out.flush()
    if invalid:
        click.echo(f"{invalid} invalid line(s) skipped", err=True)
        sys.exit(1)


@main.command()
@click.option(
    "--orgs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of organisations, named org-1 ... org-N.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of days to simulate.",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Seed: the same seed and start give the same traffic.",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="First day (YYYY-MM-DD). Default: DAYS days before today.",
)
@click.option(
    "--calls-per-day",
    type=click.FloatRange(min=0),
    default=2000,
    show_default=True,
    help="Calls on a working day per organisation (weekends are far quieter).",
)
@click.option(
    "--tz",
    default=DEFAULT_TZ,
    show_default=True,
    callback=lambda _ctx, _param, value: _zone_option(value),
    help="IANA time zone of every organisation's working day.",
)
@click.option(
    "--duplicates",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of events sent a second time.",
)
@click.option(
    "--disorder",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of events delivered late (by up to a minute).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to this file instead of stdout.",
)
def simulate(
    orgs: int,
    days: int,
    seed: int,
    start: datetime | None,
    calls_per_day: float,
    tz: str,
    duplicates: float,
    disorder: float,
    out_path: str | None,
) -> None:
    """Simulate switchboard traffic and print it as events v1 (NDJSON), streamed."""
    first = start.date() if start else date.today() - timedelta(days=days)
    settings = TrafficSettings(
        orgs=orgs,
        days=days,
        seed=seed,
        start=first,
        calls_per_day=calls_per_day,
        tz=tz,
        duplicates=duplicates,
        disorder=disorder,
    )
    if out_path is None:
        _write_lines(sys.stdout.buffer, settings)
    else:
        with open(out_path, "wb") as out:
            _write_lines(out, settings)


def _write_lines(out: BinaryIO, settings: TrafficSettings) -> None:
    buffer: list[bytes] = []
    for line in event_lines(settings):
        buffer.append(line)
        if len(buffer) >= 4096:
            out.write(b"".join(buffer))
            buffer.clear()
    out.write(b"".join(buffer))
    out.flush()


# -- the service: store, operator commands, server ------------------------------------------


def _db_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        "db_url",
        envvar="SAMTAL_DATABASE_URL",
        default=DEFAULT_DATABASE_URL,
        show_default=True,
        show_envvar=True,
        help="Database URL: sqlite:///relative/path.db or sqlite:////absolute/path.db.",
    )(command)


def _open(db_url: str) -> Store:
    try:
        return open_store(db_url)
    except SamtalError as exc:
        raise click.UsageError(str(exc)) from exc


def _when(instant: int | None) -> str:
    if instant is None:
        return "-"
    return render(instant, find_zone("UTC"))[:19].replace("T", " ") + "Z"


def _fail(exc: SamtalError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@main.group()
def org() -> None:
    """Organisations (tenants)."""


@org.command("add")
@click.argument("name")
@click.option(
    "--tz",
    default=DEFAULT_TZ,
    show_default=True,
    callback=lambda _ctx, _param, value: _zone_option(value),
    help="IANA time zone the organisation's records are rendered in.",
)
@_db_option
def org_add(name: str, tz: str, db_url: str) -> None:
    """Add the organisation NAME."""
    try:
        added = _open(db_url).add_org(name, tz, now=system_clock())
    except SamtalError as exc:
        _fail(exc)
    click.echo(f"added organisation {added.name} ({added.tz})")


@org.command("list")
@_db_option
def org_list(db_url: str) -> None:
    """List the organisations: name, zone, created."""
    for found in _open(db_url).orgs():
        click.echo(f"{found.name}\t{found.tz}\t{_when(found.created)}")


@main.group()
def token() -> None:
    """API tokens: read tokens (one organisation's history) and ingest tokens (operators)."""


@token.command("create")
@click.argument("org_name", metavar="[ORG]", required=False)
@click.option(
    "--ingest", is_flag=True, help="An operator token that may post events for any organisation."
)
@_db_option
def token_create(org_name: str | None, ingest: bool, db_url: str) -> None:
    """Create a token; it is printed once, alone on the last line, and only its hash is kept."""
    if ingest == (org_name is not None):
        raise click.UsageError("give ORG for a read token, or --ingest (and no ORG)")
    try:
        made, secret = _open(db_url).create_token(
            "ingest" if ingest else "read", org=org_name, now=system_clock()
        )
    except SamtalError as exc:
        _fail(exc)
    scope = "any organisation (ingest)" if ingest else f"{org_name} (read)"
    click.echo(f"token {made.id} for {scope}; keep it now, it is not shown again:")
    click.echo(secret)


@token.command("list")
@_db_option
def token_list(db_url: str) -> None:
    """List tokens: id, kind, organisation, created, last used, revoked."""
    click.echo("id\tkind\torg\tcreated\tlast used\trevoked")
    for found in _open(db_url).tokens():
        click.echo(
            "\t".join(
                [
                    str(found.id),
                    found.kind,
                    found.org or "*",
                    _when(found.created),
                    _when(found.last_used),
                    _when(found.revoked),
                ]
            )
        )


@token.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@_db_option
def token_revoke(token_id: int, db_url: str) -> None:
    """Revoke the token ID (an id from `samtal token list`)."""
    try:
        _open(db_url).revoke_token(token_id, now=system_clock())
    except SamtalError as exc:
        _fail(exc)
    click.echo(f"revoked token {token_id}")


#: Rejected lines printed by `samtal import`; the summary counts them all.
MAX_SHOWN = 100


@main.command("import")
@click.argument("file", type=click.File("rb"))
@_db_option
def import_(file: BinaryIO, db_url: str) -> None:
    """Load events v1 (NDJSON) from FILE (`-` for stdin) into the database, at full speed.

    Exit status 0 when nothing was rejected, 1 otherwise; rejected lines go to stderr.
    """
    store = _open(db_url)
    gc.disable()  # as in `aggregate`: many long-lived objects, no cycles among them
    if sys.stderr.isatty():
        report = _import_with_progress(store, file)
    else:
        report = import_lines(store, file, now=system_clock)
    # Lines of unknown organisations are summed up per organisation, with what to do.
    unknown = Counter(r.unknown_org for r in report.rejected if r.unknown_org is not None)
    invalid = [r for r in report.rejected if r.unknown_org is None]
    for rejection in invalid[:MAX_SHOWN]:
        click.echo(str(rejection), err=True)
    if len(invalid) > MAX_SHOWN:
        click.echo(f"... and {len(invalid) - MAX_SHOWN:,} more invalid lines", err=True)
    for name, count in sorted(unknown.items()):
        click.echo(
            f"{count:,} line(s) of the unknown organisation {shorten(name)}: add it with "
            f"`samtal org add {name}` and import again (what is stored already counts as "
            "duplicates)",
            err=True,
        )
    click.echo(
        f"accepted {report.accepted:,}, duplicates {report.duplicates:,}, "
        f"rejected {len(report.rejected):,}"
    )
    sys.exit(1 if report.rejected else 0)


def _import_with_progress(store: Store, file: BinaryIO) -> Report:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    try:
        total: int | None = os.fstat(file.fileno()).st_size or None
    except (OSError, ValueError):
        total = None
    columns = (
        TextColumn("importing"),
        BarColumn(),
        TextColumn("{task.fields[lines]:,} lines"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("import", total=total, lines=0)

        def advance(lines: int, _report: Report) -> None:
            progress.update(task, completed=file.tell() if total else None, lines=lines)

        return import_lines(store, file, now=system_clock, progress=advance)


def _settings(db_url: str) -> Settings:
    try:
        return Settings.from_env(database_url=db_url)
    except SamtalError as exc:
        raise click.UsageError(str(exc)) from exc


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on.",
)
@_db_option
def serve(host: str, port: int, db_url: str) -> None:
    """Serve the API (GET /cdr/historik, POST /events, /docs); settings from SAMTAL_*."""
    import uvicorn

    settings = _settings(db_url)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    app = create_app(settings, store=_open(db_url))
    uvicorn.run(app, host=host, port=port, log_level="info")


DEMO_DB = "sqlite:///samtal-demo.db"
DEMO_ORG = "org-1"


@main.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to serve on (127.0.0.1).",
)
@click.option(
    "--db",
    "db_url",
    default=DEMO_DB,
    show_default=True,
    help="Database URL of the demo (made in the current directory by default).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 60),
    default=7,
    show_default=True,
    help="Days of traffic, up to yesterday.",
)
def demo(port: int, db_url: str, days: int) -> None:
    """Make (or reuse) a demo database with a week of realistic traffic and serve it.

    Prints a ready-to-paste curl command that fetches a working day's records.
    """
    import uvicorn

    store = _open(db_url)
    if store.org(DEMO_ORG) is None:
        store.add_org(DEMO_ORG, DEFAULT_TZ, now=system_clock())
    today = date.today()
    traffic = TrafficSettings(
        orgs=1,
        days=days,
        seed=1,
        start=today - timedelta(days=days),
        calls_per_day=2000,
        duplicates=0.01,
        disorder=0.01,
    )
    report = import_lines(store, event_lines(traffic), now=system_clock)
    _made, secret = store.create_token("read", org=DEMO_ORG, now=system_clock())
    day = today - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    click.echo(
        f"demo: {report.accepted:,} new events ({report.duplicates:,} duplicates) "
        f"for {DEMO_ORG}, {days} days up to {today - timedelta(days=1)}; serving on "
        f"http://127.0.0.1:{port} (API docs at /docs). Try:"
    )
    click.echo(
        f"curl -H 'Authorization: Bearer {secret}' "
        f"'http://127.0.0.1:{port}/cdr/historik?from={day}%2008:00&to={day}%2017:00'"
    )
    app = create_app(_settings(db_url), store=store)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")

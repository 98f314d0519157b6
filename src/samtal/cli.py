"""The `samtal` command line: a thin layer that parses options and calls the library."""

from __future__ import annotations

import gc
import sys
from datetime import date, datetime, timedelta
from typing import BinaryIO

import click

from samtal.aggregate import aggregate as aggregate_events
from samtal.errors import UnknownZone
from samtal.events import Event, decode_batch, decode_lines
from samtal.records import dumps
from samtal.simulate import TrafficSettings, event_lines
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
    events, rejections = decode_batch(file)
    for rejection in rejections:
        click.echo(str(rejection), err=True)
    invalid = len(rejections)
    out = sys.stdout.buffer
    zone = find_zone(tz)
    records = aggregate_events(events)
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


@main.command()
@click.option(
    "--calls-per-day",
    type=click.FloatRange(min=1),
    default=2000,
    show_default=True,
    help="Calls on the simulated working day.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Simulation seed.")
def demo(calls_per_day: float, seed: int) -> None:
    """Simulate yesterday's traffic of one company, aggregate it and show what came out."""
    from rich.console import Console
    from rich.table import Table

    day = date.today() - timedelta(days=1)
    settings = TrafficSettings(
        orgs=1,
        days=1,
        seed=seed,
        start=day,
        calls_per_day=calls_per_day,
        duplicates=0.02,
        disorder=0.02,
    )
    lines = list(event_lines(settings))
    events = [e for e in decode_lines(lines) if isinstance(e, Event)]
    records = aggregate_events(events)
    zone = find_zone(settings.tz)
    console = Console()
    console.print(
        f"simulated {len(lines):,} events of org-1 on {day}, "
        f"aggregated into {len(records):,} call records"
    )
    table = Table("receivingNo", "calls", "received", "answered by a person")
    groups: dict[str, list[int]] = {}
    for record in records:
        row = groups.setdefault(record.receiving_no or "(none)", [0, 0, 0])
        row[0] += 1
        row[1] += record.received is not None
        row[2] += record.callee_answered is not None
    for number, (calls, received, answered) in sorted(groups.items()):
        table.add_row(number, str(calls), str(received), str(answered))
    console.print(table)
    console.print("the first three records:")
    for record in records[:3]:
        click.echo(dumps(record.render(zone)))

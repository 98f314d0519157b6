"""Offline tools: `samtal aggregate` and `samtal simulate`; no database, no server."""

from __future__ import annotations

import gc
import io
import math
import mmap
import sys
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, BinaryIO

import click

from samtal.cli._common import GZIP_ERRORS, damaged, unpacked, writing, zone_option

if TYPE_CHECKING:
    from samtal.simulate import TrafficSettings


@click.command()
@click.argument("file", type=click.File("rb"), default="-")
@zone_option("IANA time zone that record times are rendered in.")
@click.option(
    "--outcome",
    is_flag=True,
    help="Add each record's outcome (answered, voicemail, abandoned, rejected, unanswered) "
    "after the seven fields.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to aggregate with. Default: one per core for a file of 4 MB or more, "
    "else one. The records are the same either way.",
)
def aggregate(file: BinaryIO, tz: str, outcome: bool, workers: int | None) -> None:
    """Aggregate events v1 (NDJSON or gzip of it, FILE or stdin) into call records, printed as
    a JSON array.

    Invalid lines are reported on stderr with their line numbers and the rest is still
    aggregated. Exit status: 0 when every line was valid, 1 when some were not, 2 on a usage
    error. Calls that have not stopped have no record; no call is closed for being idle.
    """
    from samtal.offline import PARALLEL_FROM, aggregate_file, cores
    from samtal.times import zone

    # A bulk load allocates millions of objects that all live to the end: the cyclic garbage
    # collector would only rescan them again and again (about 7% of the run).
    gc.disable()
    data = _contents(file)
    if workers is None:
        workers = cores() if len(data) >= PARALLEL_FROM else 1
    records, rejections = aggregate_file(data, zone(tz), outcome=outcome, workers=workers)
    del data
    for rejection in rejections:
        click.echo(str(rejection), err=True)
    out = sys.stdout.buffer
    with writing("standard output"):
        out.write(b"[\n" + b",\n".join(records) + b"\n]\n" if records else b"[]\n")
        out.flush()
    if rejections:
        click.echo(f"{len(rejections)} invalid line(s) skipped", err=True)
        sys.exit(1)


def _contents(file: BinaryIO) -> bytes | mmap.mmap:
    """The whole of `file`. A file on disk is mapped rather than read (reading 150 MB took
    0.12 s before any work could start); the processes forked to aggregate it then read its
    pages where the kernel keeps them. Shortening the file while it is aggregated ends the
    command (SIGBUS), as it would change what is aggregated."""
    lines = unpacked(file)
    if lines is not file:
        try:
            return lines.read()
        except GZIP_ERRORS as exc:
            damaged(file, exc, "nothing is aggregated")
    try:
        if file.tell() == 0:  # (stdin may have been read from before: then from there on)
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, io.UnsupportedOperation):  # a pipe, a terminal, an empty file
        pass
    return file.read()


@click.command()
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
    callback=lambda _ctx, _param, value: _finite(value),
    default=2000,
    show_default=True,
    help="Calls on a working day per organisation (weekends are far quieter).",
)
@zone_option("IANA time zone of every organisation's working day.")
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
    from samtal.simulate import TrafficSettings

    first = _first_day(start, days)
    traffic = TrafficSettings(
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
        with writing("standard output"):
            _write_lines(sys.stdout.buffer, traffic)
    else:
        with writing(out_path), open(out_path, "wb") as out:
            _write_lines(out, traffic)


def _finite(calls_per_day: float) -> float:
    # FloatRange lets nan through (it compares false with its bounds) and inf, which would
    # never end.
    if not math.isfinite(calls_per_day):
        raise click.BadParameter(f"{calls_per_day} is not a number of calls, such as 2000")
    return calls_per_day


def _first_day(start: datetime | None, days: int) -> date:
    """The first simulated day. The days must lie within 0001-01-02 to 9999-12-29, so that
    every instant of their calls has a date in every zone."""
    first = start.date() if start else None
    try:
        first = first or date.today() - timedelta(days=days)
        if first > date.min and first + timedelta(days=days) < date.max:
            return first
    except OverflowError:
        pass
    since = f"from {first}" if first else "back from today"
    raise click.UsageError(
        f"{days} day(s) {since} leave the days samtal simulates: 0001-01-02 to 9999-12-29"
    )


def _write_lines(out: BinaryIO, traffic: TrafficSettings) -> None:
    from samtal.simulate import event_lines

    buffer: list[bytes] = []
    for line in event_lines(traffic):
        buffer.append(line)
        if len(buffer) >= 4096:
            out.write(b"".join(buffer))
            buffer.clear()
    out.write(b"".join(buffer))
    out.flush()

"""The customer's commands, which work against any samtal server over HTTP alone: `sync` (a copy
of the call records in their own SQL database) and `stats` (the figures of spec/stats.md on that
copy). They need the extras `samtal[sync]` and `samtal[stats]`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from samtal.cli._common import need_extra, writing, zone_option


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        token = token_file.read_text().strip()
    else:
        token = os.environ.get("SAMTAL_TOKEN", "").strip()
    if not token:
        raise click.UsageError(
            "give a read token in SAMTAL_TOKEN or --token-file (never on the command line: "
            "it would show in `ps`)"
        )
    return token


@click.command()
@click.option(
    "--from", "source", required=True, help="The samtal server, e.g. https://api.example.com"
)
@click.option(
    "--into",
    "target",
    required=True,
    help="The copy: sqlite:///calls.db, postgresql://user@host/db, mysql://... or mariadb://...",
)
@click.option("--table", default="call_records", show_default=True, help="The copy's table.")
@click.option(
    "--page-size",
    type=click.IntRange(1, 10_000),
    default=10_000,  # samtal.sync.PAGE, not imported here: it needs the `sync` extra
    show_default=True,
    help="Records asked for per request (and written per transaction); fewer requests count "
    "less against the token's rate limit.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file holding the read token (else SAMTAL_TOKEN).",
)
@click.option(
    "--every",
    type=click.IntRange(1),
    help="Keep going: ask at least every S seconds; the server holds each request (up to 60 "
    "s) and answers as soon as something is new, so new records arrive within seconds. Stops "
    "cleanly on SIGTERM or Ctrl-C.",
)
def sync(
    source: str,
    target: str,
    table: str,
    page_size: int,
    token_file: Path | None,
    every: int | None,
) -> None:
    """Copy the organisation's call records into your own database and keep them up to date:
    one row per call, upserted by id, never replaced by an older version, deleted by a
    tombstone; the cursor is stored with the rows, so an interrupted sync resumes exactly."""
    need_extra("`samtal sync`", "sync", "sqlalchemy")
    from samtal.errors import SamtalError
    from samtal.sync import Copy, Feed, SyncError, server_url, shown
    from samtal.sync import sync as run

    token = _token(token_file)
    try:
        source = server_url(source)
    except SamtalError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        copy = Copy(target, source, table=table)
    except SamtalError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # whatever else a driver raises, said without the password
        raise click.ClickException(f"cannot open the copy at {shown(target)}: {exc}") from exc
    stop = threading.Event()
    if every is not None:

        def halt(*_: object) -> None:
            # Between transactions at once (a waiting request is dropped); inside one, at its
            # commit. A second signal (Ctrl-C twice; a supervisor and its `timeout` each
            # sending one) finds the stop under way: raised again, it broke the closing.
            if stop.is_set():
                return
            stop.set()
            if not copy.writing:
                raise _Stopped

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, halt)
    feed = Feed(source, token, attempts=None if every else 8)
    began, restarts = time.monotonic(), 0
    last: Any = None
    try:
        with _bar() as show:
            wait = min(every, 60) if every else 0
            for last in run(feed, copy, wait=wait, stop=stop, limit=page_size):
                if last.restarts != restarts:
                    restarts = last.restarts
                    click.echo(
                        "the server no longer keeps what follows the stored cursor: walking "
                        "the whole feed again from the beginning, upserting",
                        err=True,
                    )
                show(last, time.monotonic() - began)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from exc
    except _Stopped:
        pass
    finally:
        feed.close()
        copy.close()
    if last is None:
        return
    seconds = max(time.monotonic() - began, 1e-9)
    pages = f"{last.pages:,} page{'' if last.pages == 1 else 's'}"
    click.echo(
        f"synced {last.records:,} records and {last.deleted:,} deletions in {pages} "
        f"({last.records / seconds:,.0f} records/s), up to seq {last.cursor:,}; "
        + ("the copy is up to date" if last.up_to_date else "stopped before the end")
    )


class _Stopped(Exception):
    """SIGTERM or SIGINT while no transaction was under way."""


class _bar:
    """A live line on a terminal (records synced, rate); nothing otherwise."""

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return lambda *_: None
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.__enter__()
        task = self._progress.add_task("syncing")

        def show(done: Any, seconds: float) -> None:
            rate = done.records / max(seconds, 1e-9)
            state = "up to date" if done.up_to_date else "catching up"
            line = f"{done.records:,} records, {rate:,.0f}/s, seq {done.cursor:,}: {state}"
            self._progress.update(task, description=line)

        return show

    def __exit__(self, *exc: object) -> None:
        progress = getattr(self, "_progress", None)
        if progress is not None:
            progress.__exit__(*exc)


@click.command()
@click.option(
    "--db",
    "db_url",
    required=True,
    help="The copy `samtal sync` keeps: sqlite:///calls.db, postgresql://..., mysql://...",
)
@click.option("--table", default="call_records", show_default=True, help="The copy's table.")
@click.option("--from", "from_", required=True, help="Start, as /cdr/historik reads `from`.")
@click.option(
    "--to", default=None, help="End (inclusive), as /cdr/historik reads `to`; default now."
)
@zone_option("Zone of the period's local times and of the hours and days counted.")
@click.option(
    "--sl",
    "--threshold",
    "sl",
    default=None,
    help="Seconds within which an answer counts for the service level (default 20).",
)
@click.option(
    "--sl-base",
    type=click.Choice(["offered", "answered"]),
    default=None,
    help="The service level's denominator (default offered: abandoned calls count against it).",
)
@click.option(
    "--short-abandon",
    default=None,
    help="Seconds: an offered call nobody answered that lasted less is a short abandon.",
)
@click.option("--days", default=None, help="ISO weekdays to keep: 1-5, or 1,3,6-7 (Monday 1).")
@click.option("--hours", default=None, help="Local time of day to keep: HH:MM-HH:MM.")
@click.option(
    "--interval",
    type=click.Choice(["15min", "30min", "hour", "day", "week"]),
    default=None,
    help="Also give the figures per interval (and, in the report, a chart of them).",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["html", "json", "csv"]),
    default="html",
    show_default=True,
    help="html: a self-contained report with its charts; json or csv: the figures, as "
    "GET /cdr/stats gives them (stats.md).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (default: standard output).",
)
def stats(
    db_url: str,
    table: str,
    from_: str,
    to: str | None,
    tz: str,
    sl: str | None,
    sl_base: str | None,
    short_abandon: str | None,
    days: str | None,
    hours: str | None,
    interval: str | None,
    format_: str,
    out: Path | None,
) -> None:
    """The figures of a period of your copy, with the same choices and the same numbers as
    GET /cdr/stats: calls offered to each response group, answered, abandoned, service level,
    speed of answer, waits; calls per day and by hour and weekday."""
    need_extra("`samtal stats`", "stats", "matplotlib")
    import orjson

    from samtal.clock import system_clock
    from samtal.errors import SamtalError
    from samtal.period import parse_period
    from samtal.stats.copy import copy_span, rows_in_copy
    from samtal.stats.figures import figures, parse_definitions
    from samtal.times import zone

    try:
        definitions = parse_definitions(
            sl=sl,
            sl_base=sl_base,
            short_abandon=short_abandon,
            days=days,
            hours=hours,
            interval=interval,
        )
        period = parse_period(from_, to, zone=zone(tz), now=system_clock())
        found = figures(
            rows_in_copy(db_url, table, start=period.start, end=period.end),
            start=period.start,
            end=period.end,
            tz=zone(tz),
            definitions=definitions,
        )
        span = copy_span(db_url, table)
    except SamtalError as exc:
        raise click.ClickException(str(exc)) from exc
    if format_ == "json":
        text = orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n"
    elif format_ == "csv":
        from samtal.stats.figures import csv_text

        text = csv_text(found)
    else:
        from samtal.stats.report import report

        text = report(found, tz=tz, span=span)
    if out is None:
        click.echo(text, nl=False)
    else:
        with writing(str(out)):
            out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    if found["calls"]["calls"] == 0:
        held = (
            "holds no calls yet"
            if span is None
            else "holds calls from {} to {}".format(
                *(moment.astimezone(zone(tz)).date().isoformat() for moment in span)
            )
        )
        click.echo(f"no calls in this period: the copy {held}", err=True)

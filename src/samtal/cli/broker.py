"""NATS JetStream ingest: `samtal publish` (the switch's side) and `samtal consume` (workers)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from samtal.cli._common import (
    GZIP_ERRORS,
    damaged,
    db_option,
    fail,
    file_progress,
    listen,
    need_extra,
    open_db,
    settings,
    unpacked,
)
from samtal.clock import system_clock
from samtal.streams import StreamNames

if TYPE_CHECKING:
    from samtal.ingest.nats import Published

DEFAULTS = StreamNames()


def _nats_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--nats",
                "nats_url",
                default=None,
                help="NATS URL, or several joined by commas (a cluster). Default: SAMTAL_NATS_URL, "
                "else nats://127.0.0.1:4222.",
            ),
            click.option(
                "--stream", default=DEFAULTS.stream, show_default=True, help="JetStream stream."
            ),
            click.option(
                "--subject",
                default=DEFAULTS.subject,
                show_default=True,
                help="Subject prefix: events go to PREFIX.<org>.",
            ),
        ]
    ):
        command = option(command)
    return command


@click.command()
@click.argument("file", type=click.File("rb"), default="-")
@_nats_options
@click.option(
    "--max-age-days",
    type=click.FloatRange(min=0),
    default=DEFAULTS.max_age_days,
    show_default=True,
    help="How long the stream keeps events, when this makes it.",
)
@click.option(
    "--replicas",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="Copies of the stream on a JetStream cluster, when this makes it.",
)
@click.option(
    "--pack",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="Events of one organisation per message at most, one a line: a consumer's work per "
    "message is then done once for all of them. A consumer of an earlier samtal reads 1 only.",
)
def publish(
    file: BinaryIO,
    nats_url: str | None,
    stream: str,
    subject: str,
    max_age_days: float,
    replicas: int,
    pack: int,
) -> None:
    """Publish events v1 (NDJSON or gzip of it, FILE or stdin) to JetStream, one message per
    event (or up to --pack of one organisation's).

    Invalid lines are reported on stderr by line number and not published. Exit status 0 when
    every line was published (or was there already), 1 otherwise.
    """
    import asyncio

    need_extra("`samtal publish`", "nats", "nats")
    from samtal.ingest.nats import publish as publish_lines

    url = settings(nats_url=nats_url).nats_url
    names = _names(stream=stream, subject=subject, max_age_days=max_age_days)
    lines = unpacked(file)

    def run(progress: Callable[[int, Published], None] | None) -> Published:
        return asyncio.run(
            publish_lines(
                lines,
                url=url,
                names=names,
                replicas=replicas,
                pack=pack,
                progress=progress,
            )
        )

    from samtal.errors import SamtalError

    try:
        report = _with_progress(file, run) if sys.stderr.isatty() else run(None)
    except SamtalError as exc:  # no NATS server answered
        fail(exc)
    except GZIP_ERRORS as exc:
        if lines is file:  # not the decompression's
            raise
        damaged(file, exc, "the lines before it are published; publish the mended file again "
                "(the stream drops what it holds already)")  # fmt: skip
    for rejection in report.shown:
        click.echo(str(rejection), err=True)
    if report.rejected > len(report.shown):
        click.echo(f"... and {report.rejected - len(report.shown):,} more invalid lines", err=True)
    click.echo(
        f"published {report.published:,}, duplicates {report.duplicates:,}, "
        f"rejected {report.rejected:,}, failed {report.failed:,}"
    )
    sys.exit(1 if report.rejected or report.failed else 0)


def _names(**given: Any) -> StreamNames:
    """The stream's names and bounds as given; a usage error (exit 2) for one NATS would refuse
    later, in a traceback, or take as a wildcard."""
    from samtal.errors import UsageError

    try:
        return StreamNames(**given)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc


def _with_progress(
    file: BinaryIO, run: Callable[[Callable[[int, Published], None]], Published]
) -> Published:
    """`run` with a progress bar on stderr: lines read, events published."""
    with file_progress(file, "publishing", "lines", "published") as advance:
        return run(lambda lines, report: advance(lines=lines, published=report.published))


@click.command()
@_nats_options
@click.option(
    "--durable",
    default=DEFAULTS.durable,
    show_default=True,
    help="Durable consumer name, shared by the workers.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 100_000),
    default=DEFAULTS.batch,
    show_default=True,
    help="Events per fetch and transaction.",
)
@click.option(
    "--dead-letter",
    default=DEFAULTS.dead_letter,
    show_default=True,
    help="Subject rejected events go to, with their reason.",
)
@click.option(
    "--ack-wait",
    type=click.FloatRange(min=1),
    default=DEFAULTS.ack_wait,
    show_default=True,
    help="Seconds before a batch that a dead worker held goes to another (set when the "
    "durable consumer is made).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve this worker's metrics (events by outcome, JetStream pending) on this port.",
)
@db_option
def consume(
    nats_url: str | None,
    stream: str,
    subject: str,
    durable: str,
    batch: int,
    dead_letter: str,
    ack_wait: float,
    metrics_port: int | None,
    db_url: str | None,
) -> None:
    """Consume events from JetStream into the database, as one of any number of workers.

    Each batch is acknowledged once stored; a message that can never be stored is dead-lettered
    with its reason. SIGTERM or SIGINT stops within seconds and exits 0 (a batch not stored by
    then is left to another worker).
    """
    import asyncio

    need_extra("`samtal consume`", "nats", "nats")
    from samtal.ingest.nats import consume as consume_events
    from samtal.logs import configure as configure_logging

    names = _names(
        stream=stream,
        subject=subject,
        durable=durable,
        dead_letter=dead_letter,
        ack_wait=ack_wait,
        batch=batch,
    )

    config = settings(database_url=db_url, nats_url=nats_url)
    configure_logging(config.log_format)
    # Opened here to fail at once on a database that cannot work, and to bring its schema up
    # to date; the batches are stored by processes of the consumer's own, each with its store.
    store = open_db(config.database_url, create=True)
    writers = store.writers
    store.close()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        listen("0.0.0.0", metrics_port, option="--metrics-port").close()
        start_http_server(metrics_port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        done = await consume_events(
            config.database_url,
            writers=writers,
            url=config.nats_url,
            now=system_clock,
            stop=stop,
            names=names,
            settings=config,
        )
        logging.getLogger("samtal.consume").info(
            "stopped: %d batches, %d accepted, %d duplicates, %d rejected",
            done.batches,
            done.accepted,
            done.duplicates,
            done.rejected,
        )

    from samtal.errors import SamtalError

    try:
        asyncio.run(run())
    except SamtalError as exc:  # the connection closed for good: a supervisor starts it again
        fail(exc)

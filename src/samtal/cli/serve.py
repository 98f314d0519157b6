"""`samtal serve` (the API) and `samtal demo` (a week of traffic, served)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import textwrap
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from samtal.cli._common import DEFAULT_TZ, db_option, listen, open_db, server_settings
from samtal.clock import system_clock
from samtal.settings import Settings

if TYPE_CHECKING:
    from samtal.store import Store


def _settings_help() -> str:
    """Every setting with its default and help, for `samtal serve --help`."""
    lines = ["Settings, from the environment (default in brackets):", ""]
    for variable, default, text in Settings.describe():
        wrapped = textwrap.wrap(text, 72, initial_indent="    ", subsequent_indent="    ")
        lines += ["\b", f"{variable} [{default}]", *wrapped, ""]
    return "\n".join(lines)


@click.command(epilog=_settings_help())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Server processes on the one port. Background duties run in one of them.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Also serve the metrics, without a token, on this port of --host (for a scraper on a "
    "private network; GET /metrics on the API port takes an ingest token).",
)
@db_option
def serve(host: str, port: int, workers: int, metrics_port: int | None, db_url: str | None) -> None:
    """Serve the API: /cdr/historik, /cdr/changes, /cdr/calls, /cdr/stats, /cdr/erasures,
    POST /events and /docs."""
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Before anything imports prometheus_client: the workers report as one, through files
        # in a folder of this run's, removed when it ends (each run left one behind before).
        made = tempfile.mkdtemp(prefix="samtal-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
        try:
            _serve(host, port, workers, metrics_port, db_url)
        finally:
            shutil.rmtree(made, ignore_errors=True)
        return
    _serve(host, port, workers, metrics_port, db_url)


def _serve(
    host: str, port: int, workers: int, metrics_port: int | None, db_url: str | None
) -> None:
    import uvicorn

    from samtal.api import create_app
    from samtal.api._transport import LOOP, NoDelayH11Protocol, collect_rarely
    from samtal.logs import configure as configure_logging

    _open_files_to_the_hard_limit()
    collect_rarely()
    config = server_settings(database_url=db_url)
    # A port that is taken, or a host that is not this machine's, said in a sentence before
    # anything is made (uvicorn would log it and exit 3; the metrics' server, a traceback).
    listen(host, port).close()
    if metrics_port is not None:
        if metrics_port == port:
            raise click.UsageError("--metrics-port must be another port than --port")
        listen(host, metrics_port, option="--metrics-port").close()
    open_db(
        config.database_url, create=True
    ).close()  # a bad URL or a newer schema fails here, once
    configure_logging(config.log_format)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from samtal.metrics import registry

        start_http_server(metrics_port, addr=host, registry=registry())
    # uvicorn leaves logging as configured here (log_config=None); samtal logs each request.
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "http": NoDelayH11Protocol,
        "loop": LOOP,
    }
    if workers == 1:
        uvicorn.run(create_app(config), **common)
        return
    # Each worker is a new process that builds its app from the environment.
    os.environ["SAMTAL_DATABASE_URL"] = config.database_url
    uvicorn.run("samtal.api:app_from_env", factory=True, workers=workers, **common)


def _open_files_to_the_hard_limit() -> None:
    """Let this process (and the workers it starts) hold as many connections as the system
    lets it: systemd starts a service with a soft limit of 1,024 open files, and at about a
    thousand connections (each follower of the feed holds one for up to a minute) the server
    then turned every new client away. The hard limit is the operator's to set."""
    try:
        import resource  # not on Windows
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MOST_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


#: Open files asked for where the hard limit is infinite (Linux's nr_open by default).
MOST_OPEN_FILES = 1 << 20


DEMO_DB = "sqlite:///samtal-demo.db"
DEMO_ORG = "org-1"


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to serve on (127.0.0.1); 0 picks a free one.",
)
@click.option(
    "--db",
    "db_url",
    default=DEMO_DB,
    show_default=True,
    help="Database URL of the demo (relative paths are to the current folder).",
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

    Prints a ready-to-paste curl command that fetches a working day's records. Its read token
    is kept beside the database (`<file>.token`) and used again while the database is.
    """
    import uvicorn

    from samtal.api import create_app
    from samtal.api._transport import LOOP, NoDelayH11Protocol, collect_rarely
    from samtal.ingest import import_lines
    from samtal.logs import configure as configure_logging
    from samtal.simulate import TrafficSettings, event_lines

    listener = listen("127.0.0.1", port)  # first: a busy port fails before anything is made
    port = listener.getsockname()[1]
    store = open_db(db_url, create=True)
    if not store.orgs_named([DEMO_ORG]):
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
    config = server_settings(database_url=db_url)
    report = import_lines(store, event_lines(traffic), now=system_clock, settings=config)
    secret, note = _demo_token(store, db_url)
    day = today - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    loaded = (
        f"loaded {report.accepted:,} events"
        if report.accepted
        else f"the {report.duplicates:,} events were loaded before (nothing new to add)"
    )
    click.echo(
        f"demo: {loaded} for {DEMO_ORG}, {days} days up to {today - timedelta(days=1)}; "
        f"{note}; serving on http://127.0.0.1:{port} (API docs at /docs); each request is "
        "logged below. Try:"
    )
    click.echo(
        f"curl -H 'Authorization: Bearer {secret}' "
        f"'http://127.0.0.1:{port}/cdr/historik?from={day}%2008:00&to={day}%2017:00'"
    )
    configure_logging(config.log_format)  # one line per request, as `serve` writes them
    collect_rarely()
    app = create_app(config, store=store)
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, http=NoDelayH11Protocol, loop=LOOP)
    )
    server.run(sockets=[listener])


def _demo_token(store: Store, db_url: str) -> tuple[str, str]:
    """The demo's read token: the one kept beside the database while it is still valid, else
    a new one (kept there for next time); and a note saying which."""
    from samtal.store.sqlite import path_of

    kept = Path(path_of(db_url) + ".token") if db_url.startswith("sqlite:") else None
    if kept is not None and kept.exists():
        secret = kept.read_text().strip()
        found = store.token_for(secret)
        if found is not None and found.revoked is None and found.org == DEMO_ORG:
            return secret, f"the read token kept in {kept}"
    _made, secret = store.create_token("read", org=DEMO_ORG, now=system_clock())
    if kept is None:
        return secret, "a new read token"
    kept.write_text(secret + "\n")
    os.chmod(kept, 0o600)
    return secret, f"a new read token, kept in {kept}"

"""What the commands share: the zone and database options, settings, failing with a message."""

from __future__ import annotations

import contextlib
import errno
import gzip
import importlib
import os
import socket
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import click

from samtal.errors import SamtalError, UnknownZone
from samtal.settings import Settings
from samtal.times import named_zone

if TYPE_CHECKING:
    from samtal.store import Store

DEFAULT_TZ = "Europe/Stockholm"


def _zone(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        named_zone(value)
    except UnknownZone as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


def zone_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--tz`: an IANA zone name, checked."""
    return click.option("--tz", default=DEFAULT_TZ, show_default=True, callback=_zone, help=help)


def db_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--db URL`; without it, the setting SAMTAL_DATABASE_URL (see `settings`)."""
    return click.option(
        "--db",
        "db_url",
        default=None,
        help="Database URL: sqlite:///samtal.db, sqlite:////var/lib/samtal.db or "
        "postgresql://user@host:port/db. Default: SAMTAL_DATABASE_URL, else sqlite:///samtal.db.",
    )(command)


def settings(**overrides: Any) -> Settings:
    """The settings: SAMTAL_* from the environment, then the command's own options."""
    try:
        return Settings.from_env(**overrides)
    except SamtalError as exc:
        raise click.UsageError(str(exc)) from exc


def need_extra(what: str, extra: str, module: str) -> None:
    """Stop with the pip command that adds `extra` when `module`, which it brings, is missing:
    an install without extras (a lean server, a customer's client) is told what to add, not
    shown a traceback."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise click.ClickException(
            f"{what} needs its extra: pip install 'samtal[{extra}]'"
        ) from None


def server_settings(**overrides: Any) -> Settings:
    """`settings` for a command that serves the API: what they name must be installed too."""
    config = settings(**overrides)
    if config.redis_url:
        need_extra("SAMTAL_REDIS_URL (rate limits shared through Redis)", "redis", "coredis")
    return config


def open_db(db_url: str | None, *, reads: bool = True, create: bool = False) -> Store:
    """The store that `--db` (or the settings) name (`reads=False`: see `open_store`). Only
    the commands that bring data in (`create=True`) make a SQLite file that is not there: the
    rest, given a mistyped path, say so rather than answer from a new, empty database."""
    from samtal.store import open_store

    try:
        return open_store(settings(database_url=db_url).database_url, reads=reads, create=create)
    except SamtalError as exc:
        raise click.UsageError(str(exc)) from exc


#: How a gzip file begins (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"
#: What reading a damaged gzip file raises, part of the way in.
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def unpacked(file: BinaryIO) -> BinaryIO:
    """`file` as its lines are read: decompressed as it goes when it is gzip (its first bytes
    say so, whatever its name; stdin too), as it is otherwise. Events are often kept
    compressed, and POST /events takes gzip too."""
    peek = getattr(file, "peek", None)
    if peek is not None and peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=file, mode="rb")  # type: ignore[return-value]
    return file


def damaged(file: BinaryIO, exc: Exception, done: str) -> NoReturn:
    """Fail on a gzip file that breaks off or is damaged part of the way in; `done` says what
    became of the lines before."""
    where = ""
    with contextlib.suppress(OSError, ValueError):
        where = f" near byte {file.tell():,}"
    fail(SamtalError(f"{file.name} is damaged gzip{where} ({exc}): {done}"))


@contextmanager
def writing(what: str) -> Iterator[None]:
    """An error while writing `what` (a file, standard output) as one line: a folder that is
    not there, a full disk. A reader gone away (`| head`) is left to click, which ends
    quietly."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        raise click.ClickException(f"cannot write {what}: {exc.strerror or exc}") from exc


def fail(exc: SamtalError) -> NoReturn:
    """Print the error's message and exit 1."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@contextmanager
def file_progress(file: BinaryIO, label: str, *counts: str) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr over the reading of `file`, showing `counts` (e.g. "lines",
    "published"); yields `advance(**counts)`, which moves the bar to the file's position. Gone
    when the block ends."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    try:
        total: int | None = os.fstat(file.fileno()).st_size or None
    except (OSError, ValueError):
        total = None
    shown = ", ".join(f"{{task.fields[{name}]:,}} {name}" for name in counts)
    columns = (TextColumn(label), BarColumn(), TextColumn(shown), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        start: dict[str, Any] = dict.fromkeys(counts, 0)  # rich's fields are untyped
        task = progress.add_task(label, total=total, **start)

        def advance(**values: Any) -> None:
            progress.update(task, completed=file.tell() if total else None, **values)

        yield advance


def listen(host: str, port: int, *, option: str = "--port") -> socket.socket:
    """A socket bound to host:port and listening, or a usage error that says what to do
    (`option` names the port's). A server's port is tried this way before anything is made:
    uvicorn logs a port in use and exits 3, prometheus' server raises."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise click.UsageError(f"cannot serve on {host}:{port} ({exc.strerror}): {_HOST}") from None
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        advice = (
            f"stop what uses it, or pick another port with {option}"
            if exc.errno == errno.EADDRINUSE
            else _HOST
        )
        raise click.UsageError(
            f"cannot serve on {host}:{port} ({exc.strerror}): {advice}"
        ) from None
    listener.listen(2048)
    return listener


_HOST = "give --host an address of this machine, such as 127.0.0.1 or 0.0.0.0"

"""The operator's commands: organisations, tokens, bulk import."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, NoReturn, TextIO

import click

from samtal.cli._common import (
    GZIP_ERRORS,
    damaged,
    db_option,
    fail,
    file_progress,
    open_db,
    settings,
    unpacked,
    zone_option,
)
from samtal.clock import system_clock
from samtal.errors import SamtalError, StoreError, UsageError, shorten, without_password
from samtal.settings import MAX_RETENTION_DAYS

if TYPE_CHECKING:
    from samtal.ingest import ImportReport
    from samtal.settings import Settings
    from samtal.store import Org, Store, Token


def _when(instant: int | None) -> str:
    from samtal.times import render, zone

    if instant is None:
        return "-"
    return render(instant, zone("UTC"))[:19].replace("T", " ") + "Z"


@click.group()
def org() -> None:
    """Organisations (tenants)."""


@org.command("add")
@click.argument("name", required=False)
@zone_option("IANA time zone the organisation's records are rendered in.")
@click.option(
    "--from",
    "from_file",
    # `utf-8-sig`: a byte order mark that opens the file (a spreadsheet's export) is not part
    # of the first name.
    type=click.File("r", encoding="utf-8-sig"),
    help="Add the organisations of a file (`-`: stdin), one a line: `name` or `name,zone` "
    "(--tz for the lines without a zone). One transaction; names that exist are left as "
    "they are; an invalid line refuses the whole file.",
)
@db_option
def org_add(name: str | None, tz: str, from_file: TextIO | None, db_url: str | None) -> None:
    """Add the organisation NAME (1-64 ASCII letters, digits, '-', '_' or '.'), or every
    organisation of a file (--from)."""
    if (name is None) == (from_file is None):
        raise click.UsageError("give NAME, or --from FILE (and no NAME)")
    if from_file is not None:
        _add_orgs(from_file, tz, db_url)
        return
    assert name is not None
    try:
        added = open_db(db_url, create=True).add_org(name, tz, now=system_clock())
    except SamtalError as exc:
        fail(exc)
    click.echo(f"added organisation {added.name} ({added.tz})")


#: The lines `org add --from` prints of those it refuses, and of the names that exist; its
#: summary counts them all.
MAX_SHOWN = 100


def _add_orgs(source: TextIO, default_tz: str, db_url: str | None) -> None:
    """`org add --from`: read and check every line first; refuse the whole file on any bad
    one, listing them by number; else add them all in one transaction."""
    from samtal.errors import UnknownZone
    from samtal.store import check_org_name
    from samtal.times import named_zone

    rows: list[tuple[str, str]] = []
    line_of: dict[str, int] = {}  # each name's line, in the file's order
    bad: list[tuple[int, str]] = []  # (line, why)
    for number, text in _lines(source):
        name, _, tz = (part.strip() for part in text.partition(","))
        tz = tz or default_tz
        try:
            check_org_name(name)
            named_zone(tz)
        except (SamtalError, UnknownZone) as exc:
            bad.append((number, str(exc)))
            continue
        if name in line_of:
            bad.append((number, f"{name!r} is on line {line_of[name]} already"))
            continue
        line_of[name] = number
        rows.append((name, tz))
    if bad:
        _refuse(bad, "nothing was added")
    try:
        made = set(open_db(db_url, create=True).add_orgs(rows, now=system_clock()))
    except SamtalError as exc:
        fail(exc)
    existing = [name for name in line_of if name not in made]
    for name in existing[:MAX_SHOWN]:
        click.echo(f"line {line_of[name]}: {name} exists already: left as it is", err=True)
    if len(existing) > MAX_SHOWN:
        click.echo(f"... and {len(existing) - MAX_SHOWN:,} more that exist already", err=True)
    plural = "" if len(made) == 1 else "s"
    click.echo(f"added {len(made):,} organisation{plural}; {len(existing):,} existed already")


def _lines(source: TextIO) -> Iterator[tuple[int, str]]:
    """The lines of a `--from` file that say something, with their numbers (blank lines and
    `#` comments are skipped)."""
    for number, line in enumerate(source, 1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, text


def _refuse(bad: list[tuple[int, str]], outcome: str) -> NoReturn:
    """Refuse a whole `--from` file: the first MAX_SHOWN bad lines by number, and a count."""
    for number, why in sorted(bad)[:MAX_SHOWN]:
        click.echo(f"line {number}: {why}", err=True)
    if len(bad) > MAX_SHOWN:
        click.echo(f"... and {len(bad) - MAX_SHOWN:,} more invalid lines", err=True)
    fail(SamtalError(f"{len(bad):,} invalid line(s): {outcome}"))


@org.command("list")
@db_option
def org_list(db_url: str | None) -> None:
    """List the organisations: name, zone, created, retention in days."""
    installation = settings().retention_days
    for found in open_db(db_url).orgs():
        click.echo(
            f"{found.name}\t{found.tz}\t{_when(found.created)}\t{_kept(found, installation)}"
        )


def _kept(found: Org, installation: int) -> str:
    days = found.retention(installation)
    shown = f"{days} days" if days else "everything"
    return shown if found.retention_days is not None else f"{shown} (installation)"


@org.command("set")
@click.argument("name")
@click.option(
    "--retention-days",
    metavar="N|default",
    required=True,
    help="Keep this organisation's calls N days (1 to SAMTAL_RETENTION_DAYS; to 36525, a "
    "hundred years, when the installation keeps everything), or `default`: the "
    "installation's again.",
)
@db_option
def org_set(name: str, retention_days: str, db_url: str | None) -> None:
    """Change an organisation: its own retention (privacy.md). Every server process follows
    within a few seconds; the purge takes its older calls on its next round."""
    installation = settings().retention_days
    days: int | None = None
    if retention_days != "default":
        try:
            days = int(retention_days)
        except ValueError:
            raise click.BadParameter(
                f"{retention_days!r} is not a number of days or `default`",
                param_hint="--retention-days",
            ) from None
        if days < 1 or days > (installation or MAX_RETENTION_DAYS):
            most = (
                f"{installation}, the installation's"
                if installation
                else f"{MAX_RETENTION_DAYS} (a hundred years)"
            )
            raise click.BadParameter(
                f"{days} is out of range: from 1 to {most}", param_hint="--retention-days"
            )
    try:
        changed = open_db(db_url).set_retention(name, days)
    except SamtalError as exc:
        fail(exc)
    click.echo(f"{changed.name} keeps {_kept(changed, installation)}")


@click.group()
def token() -> None:
    """API tokens: read tokens (one organisation's history) and ingest tokens (operators)."""


@token.command("create")
@click.argument("org_name", metavar="[ORG]", required=False)
@click.option(
    "--ingest", is_flag=True, help="An operator token that may post events for any organisation."
)
@click.option(
    "--scope",
    "scope_text",
    metavar="SCOPES",
    help="What a read token may do, comma-separated: records (/cdr/historik, /cdr/changes, "
    "/cdr/calls), stats (/cdr/stats), erase (/cdr/erasures). Default: records,stats.",
)
@click.option(
    "--groups",
    "groups_text",
    metavar="NUMBERS",
    help="Only the records these response groups received (receivingNo), comma-separated; "
    "such a token cannot follow /cdr/changes.",
)
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="The numbers of people (callerNo, calleeNo, a path's numbers) as the organisation's "
    "pseudonyms, in every answer and filter.",
)
@click.option(
    "--from",
    "from_file",
    type=click.File("r", encoding="utf-8-sig"),
    help="A read token for each organisation of a file (`-`: stdin), one a line (`name`, or "
    "`name,zone` as for `org add --from`), all alike (--scope, --groups, --pseudonymize), in "
    "one transaction; printed as `org, id, token` lines (tab-separated). An invalid, repeated "
    "or unknown name refuses the whole file.",
)
@db_option
def token_create(
    org_name: str | None,
    ingest: bool,
    scope_text: str | None,
    groups_text: str | None,
    pseudonymize: bool,
    from_file: TextIO | None,
    db_url: str | None,
) -> None:
    """Create a token; it is printed once, alone on the last line, and only its hash is kept.
    With --from, a read token for each organisation of a file."""
    if from_file is not None and (ingest or org_name is not None):
        raise click.UsageError("--from makes read tokens: give no ORG and no --ingest")
    if from_file is None and ingest == (org_name is not None):
        raise click.UsageError("give ORG for a read token, or --ingest (and no ORG)")
    if ingest and (scope_text is not None or groups_text is not None or pseudonymize):
        raise click.UsageError(
            "--scope, --groups and --pseudonymize narrow a read token; an ingest token has none"
        )
    from samtal.privacy import DEFAULT_SCOPES, parse_groups, parse_scopes

    try:
        scopes = DEFAULT_SCOPES if scope_text is None else parse_scopes(scope_text)
        groups = None if groups_text is None else parse_groups(groups_text)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    if from_file is not None:
        _create_tokens(from_file, db_url, scopes=scopes, groups=groups, pseudonymize=pseudonymize)
        return
    try:
        # An installation's first ingest token may come before its first organisation.
        made, secret = open_db(db_url, create=ingest).create_token(
            "ingest" if ingest else "read",
            org=org_name,
            now=system_clock(),
            scopes=scopes,
            groups=groups,
            pseudonymize=pseudonymize,
        )
    except SamtalError as exc:
        fail(exc)
    if ingest:
        scope = "any organisation (ingest)"
    else:
        groups_shown = "" if made.groups is None else f"; groups {','.join(made.groups)}"
        masked = "; pseudonymized" if made.pseudonymize else ""
        scope = f"{org_name} (read: {','.join(made.scopes)}{groups_shown}{masked})"
    click.echo(f"token {made.id} for {scope}; keep it now, it is not shown again:")
    click.echo(secret)


def _create_tokens(
    source: TextIO,
    db_url: str | None,
    *,
    scopes: tuple[str, ...],
    groups: tuple[str, ...] | None,
    pseudonymize: bool,
) -> None:
    """`token create --from`: read and check every line first (a name, of an organisation
    that exists, once; a zone after it is ignored); refuse the whole file on any bad one,
    listing them by number; else make them all in one transaction and print them, one a
    line."""
    from samtal.store import check_org_name

    line_of: dict[str, int] = {}  # each name's line, in the file's order
    bad: list[tuple[int, str]] = []  # (line, why)
    for number, text in _lines(source):
        name = text.partition(",")[0].strip()  # `org add --from`'s file: its zone is not used
        if name in line_of:
            bad.append((number, f"{name!r} is on line {line_of[name]} already"))
            continue
        line_of[name] = number
    store = open_db(db_url)
    known = store.orgs_named(list(line_of))
    for name, number in line_of.items():
        if name in known:
            continue  # whatever the rule for new names says of it now
        try:
            check_org_name(name)
        except SamtalError as exc:
            bad.append((number, str(exc)))
        else:
            bad.append((number, f"unknown organisation {name!r}"))
    if bad:
        _refuse(bad, "no token was made")
    try:
        made = store.create_tokens(
            "read",
            orgs=list(line_of),
            now=system_clock(),
            scopes=scopes,
            groups=groups,
            pseudonymize=pseudonymize,
        )
    except SamtalError as exc:
        fail(exc)
    for found, secret in made:
        click.echo(f"{found.org}\t{found.id}\t{secret}")
    plural = "" if len(made) == 1 else "s"
    click.echo(
        f"made {len(made):,} read token{plural}; keep them now, they are not shown again",
        err=True,
    )


@token.command("list")
@db_option
def token_list(db_url: str | None) -> None:
    """List tokens: id, kind, organisation, created, last used, revoked, and what a read
    token may do: its scopes, response groups and whether it sees pseudonyms."""
    click.echo("id\tkind\torg\tcreated\tlast used\trevoked\tscopes\tgroups\tpseudonymized")
    for found in open_db(db_url).tokens():
        click.echo(
            "\t".join(
                [
                    str(found.id),
                    found.kind,
                    found.org or "*",
                    _when(found.created),
                    _when(found.last_used),
                    _when(found.revoked),
                    ",".join(found.scopes) or "-",
                    _groups(found),
                    "yes" if found.pseudonymize else "no",
                ]
            )
        )


def _groups(found: Token) -> str:
    if found.kind != "read":
        return "-"
    return "*" if found.groups is None else ",".join(found.groups)


@token.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@db_option
def token_revoke(token_id: int, db_url: str | None) -> None:
    """Revoke the token ID (an id from `samtal token list`)."""
    now = system_clock()
    try:
        revoked = open_db(db_url).revoke_token(token_id, now=now).revoked
    except SamtalError as exc:
        fail(exc)
    if revoked != now:  # the one it had is kept
        click.echo(f"token {token_id} was revoked already, at {_when(revoked)}")
    else:
        click.echo(f"revoked token {token_id}")


@click.group()
def webhook() -> None:
    """Webhook subscriptions: an organisation's new record versions POSTed to a URL."""


@webhook.command("add")
@click.argument("org_name", metavar="ORG")
@click.argument("url")
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="Send people's numbers as the organisation's pseudonyms (as a --pseudonymize token "
    "sees them).",
)
@db_option
def webhook_add(org_name: str, url: str, pseudonymize: bool, db_url: str | None) -> None:
    """Subscribe URL to ORG's record versions from now on; prints the id, and the secret
    (shown once) alone on the last line."""
    try:
        made, secret = open_db(db_url).add_webhook(
            org_name, url, now=system_clock(), pseudonymize=pseudonymize
        )
    except SamtalError as exc:
        fail(exc)
    if url.startswith("http:"):
        click.echo("note: an http:// URL is not encrypted; use https:// outside a test", err=True)
    click.echo(f"webhook {made.id} for {made.org} -> {made.url}, from seq {made.cursor}")
    click.echo("its signing secret; keep it now, it is not shown again:")
    click.echo(secret)


@webhook.command("list")
@click.argument("org_name", metavar="[ORG]", required=False)
@db_option
def webhook_list(org_name: str | None, db_url: str | None) -> None:
    """List subscriptions: id, org, url, state, last success, last failure, backlog, given up,
    whether people's numbers go out as pseudonyms."""
    store = open_db(db_url)
    if org_name is not None:
        try:
            store.org(org_name)  # a mistyped name listed nothing, as if it had no subscription
        except SamtalError as exc:
            fail(exc)
    click.echo(
        "id	org	url	state	last success	last failure	backlog	given up	pseudonymized"
    )
    for found in store.hooks.all(org_name):
        state = "active" if found.active else "disabled"
        click.echo(
            "\t".join(
                [
                    found.id,
                    found.org,
                    without_password(found.url),  # as a log or a shared screen may show it
                    state,
                    _when(found.last_success),
                    _when(found.last_failure),
                    str(found.backlog),
                    str(found.given_up),
                    "yes" if found.pseudonymize else "no",
                ]
            )
        )


@webhook.command("remove")
@click.argument("hook_id", metavar="ID")
@db_option
def webhook_remove(hook_id: str, db_url: str | None) -> None:
    """Remove the subscription ID and whatever it had waiting."""
    try:
        open_db(db_url).remove_webhook(hook_id)
    except SamtalError as exc:
        fail(exc)
    click.echo(f"removed webhook {hook_id}")


@webhook.command("replay")
@click.argument("hook_id", metavar="ID")
@click.option(
    "--after",
    type=click.IntRange(0),
    required=True,
    help="Deliver again every version whose seq is greater than this (0: all that is kept).",
)
@db_option
def webhook_replay(hook_id: str, after: int, db_url: str | None) -> None:
    """Deliver again every version after --after (resuming a disabled subscription)."""
    try:
        found = open_db(db_url).replay_webhook(hook_id, after=after)
    except SamtalError as exc:
        fail(exc)
    click.echo(f"webhook {found.id} delivers every version after seq {after} again")


@click.command("import")
@click.argument("file", type=click.File("rb"))
@db_option
def import_(file: BinaryIO, db_url: str | None) -> None:
    """Load events v1 (NDJSON, or gzip of it) from FILE (`-` for stdin) into the database, at
    full speed.

    Exit status 0 when nothing was rejected, 1 otherwise; rejected lines go to stderr.
    """
    from samtal.ingest import import_lines

    config = settings(database_url=db_url)
    store = open_db(config.database_url, reads=False, create=True)
    gc.disable()  # as in `aggregate`: many long-lived objects, no cycles among them
    lines = unpacked(file)
    try:
        if sys.stderr.isatty():
            report = _import_with_progress(store, file, lines, config)
        else:
            report = import_lines(store, lines, now=system_clock, settings=config)
    except GZIP_ERRORS as exc:
        if lines is file:  # not the decompression's (a decoding process lost, say)
            raise
        damaged(file, exc, _AGAIN)
    except StoreError as exc:  # a full disk, a database lost midway: said, not a traceback
        fail(StoreError(f"{exc}; the batches before it are stored: import the file again "
                        "(what is stored counts as duplicates)"))  # fmt: skip
    if report.accepted:
        # What the planner knows of the tables is what it saw when the file was made (empty,
        # for a new one) until a server's duty round: a command run next plans with this.
        store.tune()
    # Lines of unknown organisations are summed up per organisation, with what to do.
    for rejection in report.shown:
        click.echo(str(rejection), err=True)
    if report.invalid > len(report.shown):
        click.echo(f"... and {report.invalid - len(report.shown):,} more invalid lines", err=True)
    for name, count in sorted(report.unknown.items()):
        click.echo(
            f"{count:,} line(s) of the unknown organisation {shorten(name)}: add it with "
            f"`samtal org add {name}` and import again (what is stored already counts as "
            "duplicates)",
            err=True,
        )
    if report.unknown_unnamed:
        click.echo(
            f"{report.unknown_unnamed:,} more line(s) of further unknown organisations",
            err=True,
        )
    click.echo(
        f"accepted {report.accepted:,}, duplicates {report.duplicates:,}, "
        f"rejected {report.rejected:,}"
    )
    sys.exit(1 if report.rejected else 0)


#: What a damaged import leaves, and what to do.
_AGAIN = (
    "the lines before it may be stored; import the mended file again (what is stored counts "
    "as duplicates)"
)


def _import_with_progress(
    store: Store, file: BinaryIO, lines: BinaryIO, config: Settings
) -> ImportReport:
    """The import of `lines` (`file`, decompressed where it is gzip) with a progress bar over
    the reading of `file`."""
    from samtal.ingest import import_lines

    with file_progress(file, "importing", "lines") as advance:
        return import_lines(
            store,
            lines,
            now=system_clock,
            settings=config,
            progress=lambda lines, _report: advance(lines=lines),
        )


@click.command("erase")
@click.argument("org_name", metavar="ORG")
@click.option("--call", "calls", multiple=True, metavar="ID", help="A call to erase (repeatable).")
@click.option(
    "--number",
    metavar="NUMBER",
    help="Erase every call in which this number appears in any event.",
)
@click.option(
    "--from", "from_", metavar="WHEN", help="With --number: calls that started then or later."
)
@click.option("--to", metavar="WHEN", help="With --number: calls that started up to then.")
@db_option
def erase(
    org_name: str,
    calls: tuple[str, ...],
    number: str | None,
    from_: str | None,
    to: str | None,
    db_url: str | None,
) -> None:
    """Erase calls of ORG for good (privacy.md): their events and records go in one
    transaction, each record leaves a tombstone that says it was erased (so every copy kept
    with the feed erases it too), its late events are dropped, and the erasure is kept in the
    audit trail with the number only as a keyed hash. WHEN takes the forms of /cdr/historik."""
    from samtal.events import why_not
    from samtal.period import parse_selection
    from samtal.times import zone

    if bool(calls) == (number is not None):
        raise click.UsageError("give --call ID (one or more) or --number NUMBER, not both")
    if number is None and (from_ is not None or to is not None):
        raise click.UsageError("--from and --to choose the calls of a --number")
    # As POST /cdr/erasures checks them: a number mistyped (`+46 72 111`) matches no call, and
    # an operator would be told "erased 0 calls" of a person whose calls are all still there.
    why = why_not("number", "--number", number) if number is not None else None
    why = why or next(filter(None, (why_not("id", "--call", call) for call in calls)), None)
    if why is not None:
        raise click.UsageError(why)
    store = open_db(db_url)
    try:
        found = store.org(org_name)
        period = None
        if number is not None and (from_ is not None or to is not None):
            chosen = parse_selection(from_, to, zone=zone(found.tz))
            period = (chosen.start, chosen.end)
        done = store.erase(
            org_name, by="cli", now=system_clock(), calls=calls or None, number=number,
            period=period, shown=(from_, to),
        )  # fmt: skip
    except SamtalError as exc:
        fail(exc)
    click.echo(f"erased {done.calls:,} call(s) of {org_name} (erasure {done.id})")

"""The domain's exceptions: one tree, each class knowing its HTTP status and problem title.

The API turns any of them into `application/problem+json` (RFC 9457) in one handler; the CLI
prints the message. A message says what was wrong and what to do, in the user's terms.
"""

from __future__ import annotations

import re

#: How much of a client's input a message quotes back.
QUOTE_LIMIT = 64


def shorten(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A client's `value` as a message quotes it (its repr), cut to about `limit` characters:
    an error never echoes a 100 kB parameter back whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    return f"{text[:limit]}... ({size:,} characters)"


def without_password(url: str) -> str:
    """A URL (or several, joined by commas) with each password as ***, for a message or a
    log: they end up in terminals, cron mails and log stores."""
    return _PASSWORD.sub(r"\1***@", url)


def quoted_url(url: str, limit: int = QUOTE_LIMIT) -> str:
    """A URL as a message quotes it: its password as ***, cut to about `limit` characters."""
    return shorten(without_password(url), limit)


#: The password of a URL `scheme://user:password@host...`: up to the `@`, even where it holds
#: a `/` that should have been written `%2F`.
_PASSWORD = re.compile(r"(://[^/:@,\s]*:)[^@,\s]*@")


def named(text: str, limit: int = QUOTE_LIMIT) -> str:
    """A name a client sent (a parameter's, say) as a message shows it between backticks: as
    it is, control characters escaped, cut to about `limit` characters."""
    shown = repr(text)[1:-1] if not text.isprintable() else text
    if len(shown) <= limit:
        return shown
    return f"{shown[:limit]}... ({len(text):,} characters)"


class SamtalError(Exception):
    """Base of every error samtal raises on purpose; its message is for the user."""

    status: int = 500
    title: str = "Internal error"
    #: The last part of the problem type URI, e.g. `bad-request`.
    slug: str = "internal-error"
    headers: dict[str, str] = {}  # noqa: RUF012 (read-only class default)


class UsageError(SamtalError):
    """The caller asked for something that cannot be done as asked."""

    status = 400
    title = "Bad request"
    slug = "bad-request"


class UnknownZone(UsageError):
    """A time zone name that the IANA database does not know."""


class BadPeriod(UsageError):
    """`from` or `to` is missing, malformed, or makes an empty period."""

    title = "Bad period"
    slug = "bad-period"


class BeforeRetention(UsageError):
    """`from` is earlier than the retention window keeps."""

    title = "Period before the retention window"
    slug = "before-retention"


class BadFilter(UsageError):
    """A filter of /cdr/historik (query.md) that is not one, or filters that contradict each
    other."""

    title = "Bad filter"
    slug = "bad-filter"


class BadBody(UsageError):
    """A request body that is not NDJSON or a JSON array of events at all."""

    title = "Bad body"
    slug = "bad-body"


class Unauthenticated(SamtalError):
    """No credentials, or unknown or revoked ones."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012


class Forbidden(SamtalError):
    """Valid credentials of the wrong kind for this endpoint."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(SamtalError):
    """No such resource (an organisation, a token, a path)."""

    status = 404
    title = "Not found"
    slug = "not-found"


class NotAcceptable(SamtalError):
    """An `Accept` header that admits none of the formats an endpoint serves."""

    status = 406
    title = "Not acceptable"
    slug = "not-acceptable"


class CursorExpired(SamtalError):
    """A change feed cursor that versions were lost behind (retention), or that was never
    given out: the client starts again from `after=0` (changes.md)."""

    status = 410
    title = "Cursor expired"
    slug = "cursor-expired"


class Conflict(SamtalError):
    """The thing to create exists already."""

    status = 409
    title = "Conflict"
    slug = "conflict"


class TooLarge(SamtalError):
    """A request body over the size limit."""

    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class TooSlow(SamtalError):
    """A request body that stopped coming in; the connection is closed with the answer."""

    status = 408
    title = "Request timeout"
    slug = "request-timeout"
    headers = {"Connection": "close"}  # noqa: RUF012 (read-only class default)


class UnsupportedMediaType(SamtalError):
    """A request body of a type the endpoint does not take."""

    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class TooManyRequests(SamtalError):
    """A token over its rate limit; the headers say when to come back."""

    status = 429
    title = "Too many requests"
    slug = "too-many-requests"

    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.headers = headers


class StoreError(SamtalError):
    """The database cannot be opened or used as asked (a bad URL, a newer schema), or was lost
    under a request (a restart, a failover: nothing of it was stored, and it may be sent
    again)."""

    status = 503
    title = "Storage unavailable"
    slug = "storage-unavailable"


class NotReady(SamtalError):
    """Something the server needs (the database, Redis) cannot be reached right now."""

    status = 503
    title = "Not ready"
    slug = "not-ready"


class Overloaded(SamtalError):
    """The server holds as much as it may at once; the client should try again shortly."""

    status = 503
    title = "Service unavailable"
    slug = "overloaded"
    headers = {"Retry-After": "1"}  # noqa: RUF012

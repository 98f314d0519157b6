"""The storage interface every engine implements, and the small typed objects it returns.

Tenancy is in the signatures: every method that reads or writes call data takes the
organisation as a required keyword argument (ingest takes events, each of which names its own).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from samtal.errors import UsageError, shorten
from samtal.events import Event
from samtal.tokens import TokenKind
from samtal.types import ORG_NAME

#: Id of the `ended` event a server appends when it closes an idle call (cdr.md).
IDLE_CLOSE_ID = "samtal:idle-close:{call}"


def check_org_name(name: str) -> None:
    """UsageError unless `name` may name a new organisation (names made before the rule was
    there keep working: only new ones are checked)."""
    if not ORG_NAME.fullmatch(name):
        raise UsageError(
            f"{shorten(name)} cannot name an organisation: use 1 to 64 letters, digits, "
            "'-', '_' or '.'"
        )


@dataclass(frozen=True)
class Org:
    """An organisation (tenant) and the zone its records are rendered in."""

    name: str
    tz: str
    created: int


@dataclass(frozen=True)
class Token:
    """What is known of an API token (never the secret itself)."""

    id: int
    kind: TokenKind
    org: str | None
    created: int
    last_used: int | None
    revoked: int | None


@dataclass(frozen=True)
class IngestSummary:
    """What a batch of valid events did: accepted (new) and duplicates (already there)."""

    accepted: int
    duplicates: int
    #: Calls whose record was made or changed by this batch.
    records_changed: int


@dataclass(frozen=True)
class Change:
    """A record in the change feed: its place in the organisation's sequence, and the record."""

    seq: int
    record: bytes


class Store(Protocol):
    """The narrow storage interface: the same verbs on every engine."""

    # -- organisations and tokens (operator side) ------------------------------------------
    def add_org(self, name: str, tz: str, *, now: int) -> Org:
        """Create an organisation; Conflict when it exists."""
        ...

    def orgs(self) -> list[Org]:
        """Every organisation, by name."""
        ...

    def org(self, name: str) -> Org | None:
        """One organisation, or None."""
        ...

    def create_token(self, kind: TokenKind, *, org: str | None, now: int) -> tuple[Token, str]:
        """A new token and its secret (shown once); only its hash is kept."""
        ...

    def tokens(self) -> list[Token]:
        """Every token, newest last."""
        ...

    def revoke_token(self, token_id: int, *, now: int) -> Token:
        """Revoke a token; NotFound when there is none with that id."""
        ...

    def token_for(self, secret: str) -> Token | None:
        """The token whose secret this is, or None."""
        ...

    def touch_token(self, token_id: int, *, now: int) -> None:
        """Note that a token was used."""
        ...

    # -- call data --------------------------------------------------------------------------
    def ingest(self, events: Sequence[Event], *, now: int) -> IngestSummary:
        """Store valid events of known organisations, idempotently, and recompute the record of
        every call that received a new event, all in one durable transaction."""
        ...

    def records(self, *, org: str, start: int, end: int) -> Iterator[list[bytes]]:
        """Chunks of the rendered records of `org` whose start is in [start, end), in order."""
        ...

    def changes(self, *, org: str, after: int, limit: int) -> list[Change]:
        """Records of `org` made or changed after change number `after`, oldest first."""
        ...

    def close_idle_calls(self, *, now: int, idle: int) -> int:
        """Append an `ended` to every call that has not stopped and has had no event for `idle`
        microseconds (cdr.md); the number of calls closed."""
        ...

    def purge(self, *, org: str, before: int) -> int:
        """Remove whole calls of `org` that started before `before`; the number removed."""
        ...

    def close(self) -> None:
        """Release the engine's connections."""
        ...

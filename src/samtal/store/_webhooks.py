"""Webhook subscriptions and the deliveries waiting for a retry (spec/webhooks.md): operator
data, the same on every engine. The statements are plain SQL with `?` placeholders, run by the
engine's `operator_sql`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True)
class Webhook:
    """A subscription: where an organisation's versions go, and how that is going."""

    id: str
    org: str
    url: str
    secret: str
    created: int
    active: bool
    #: Every version up to this change number was delivered or is waiting for a retry.
    cursor: int
    last_success: int | None
    last_failure: int | None
    #: Since when every attempt failed (None after a success).
    failing_since: int | None
    #: Messages given up after the last retry.
    given_up: int
    #: Versions not yet delivered: waiting for a retry, or not yet tried. Counted by `all`
    #: only: one subscription's read (`get`, the deliverer's at each wake) leaves it at 0.
    backlog: int = 0
    #: The numbers of people go out as the organisation's pseudonyms (privacy.md).
    pseudonymize: bool = False
    #: A retry is due at the time `get` was asked about (`due_at`); False when not asked.
    retry_due: bool = False


class HookState(NamedTuple):
    """A subscription as the deliverer follows it: whether to run it, and whether to wake it
    (something to do now, or a cursor moved by a replay)."""

    id: str
    org: str
    active: bool
    cursor: int
    #: Versions not yet delivered (0 for a disabled subscription: not counted).
    backlog: int
    #: Active, with something to do now: versions after its cursor, or a retry due.
    ready: bool


class Advance(NamedTuple):
    """A subscription's round of new versions, to be kept: every version up to `cursor` is
    handled, the failed ones among them wait in `retries`, and the round went as `note` says
    (None: nothing was sent)."""

    hook: str
    cursor: int
    retries: Sequence[Retry] = ()
    note: DeliveryNote | None = None


class DeliveryNote(NamedTuple):
    """How a round of attempts went, as the subscription's row keeps it: a success clears the
    failing streak, a failure starts one (at `now`); `given_up` messages are counted, and
    `disable` stops the subscription."""

    now: int
    success: bool
    given_up: int = 0
    disable: bool = False


@dataclass(frozen=True)
class Retry:
    """A message whose delivery failed, with when to try it again."""

    webhook: str
    seq: int
    attempt: int
    due: int
    body: bytes


Statement = tuple[str, Sequence[object]]


class OperatorSql(Protocol):
    def operator_sql(self, statements: Sequence[Statement], *, write: bool) -> list[Any]:
        """Run `statements` in one transaction; the rows of the last."""
        ...


#: Subscriptions read in one statement, at most.
CHUNK = 500

_COLUMNS = (
    "id, org, url, secret, created, active, cursor, last_success, last_failure, "
    "failing_since, given_up, pseudonymize"
)


class WebhookTable:
    """The statements on the webhook tables, over an engine."""

    def __init__(self, engine: OperatorSql) -> None:
        self._sql = engine.operator_sql

    def add(
        self, hook_id: str, org: str, url: str, secret: str, *, now: int, pseudonymize: bool = False
    ) -> Webhook | None:
        """A new subscription starting at the organisation's latest change; None when there is
        no such organisation."""
        rows = self._sql(
            [
                (
                    "INSERT INTO webhooks (id, org, url, secret, created, active, cursor, "
                    "given_up, pseudonymize) SELECT ?, name, ?, ?, ?, 1, change_seq, 0, ? "
                    "FROM orgs WHERE name = ?",
                    (hook_id, url, secret, now, pseudonymize, org),
                ),
                (f"SELECT {_COLUMNS} FROM webhooks WHERE id = ?", (hook_id,)),
            ],
            write=True,
        )
        return _webhook(rows[0]) if rows else None

    def all(self, org: str | None = None) -> list[Webhook]:
        """Every subscription (of `org`), with its backlog, oldest first."""
        rows = self._sql(
            [
                (
                    f"SELECT {_COLUMNS}, "
                    "(SELECT count(*) FROM webhook_retries r WHERE r.webhook = w.id) + "
                    "(SELECT count(*) FROM calls c WHERE c.org = w.org AND c.seq > w.cursor) "
                    "FROM webhooks w WHERE CAST(? AS TEXT) IS NULL OR org = ? ORDER BY created, id",
                    (org, org),
                )
            ],
            write=False,
        )
        return [_webhook(row[:-1], backlog=row[-1]) for row in rows]

    def states(self, now: int) -> list[HookState]:
        """What the deliverer lists every second, of every subscription, oldest first: the
        backlog of the active ones only, and whether each has something to do at `now`. A
        disabled one's backlog counts every version since it stopped, which only grows (17 ms
        for 287k calls on SQLite); 10,000 whole subscriptions built each second took half of
        the 11% of a core that `samtal serve` spent idle with them; and a failing one, its
        retries not due for hours, was woken every second to find nothing to do."""
        rows = self._sql(
            [
                (
                    "SELECT id, org, active, cursor, "
                    "CASE WHEN active = 1 THEN "
                    "(SELECT count(*) FROM webhook_retries r WHERE r.webhook = w.id) ELSE 0 END, "
                    "CASE WHEN active = 1 THEN "
                    "(SELECT count(*) FROM calls c WHERE c.org = w.org AND c.seq > w.cursor) "
                    "ELSE 0 END, "
                    "CASE WHEN active = 1 AND EXISTS (SELECT 1 FROM webhook_retries r "
                    "WHERE r.webhook = w.id AND r.due <= ?) THEN 1 ELSE 0 END "
                    "FROM webhooks w ORDER BY created, id",
                    (now,),
                )
            ],
            write=False,
        )
        return [
            HookState(hook_id, org, bool(active), cursor, retries + versions, bool(versions or due))
            for hook_id, org, active, cursor, retries, versions, due in rows
        ]

    def get(self, hook_id: str) -> Webhook | None:
        """One subscription, or None; its backlog not counted (0)."""
        rows = self._sql(
            [(f"SELECT {_COLUMNS} FROM webhooks WHERE id = ?", (hook_id,))], write=False
        )
        return _webhook(rows[0]) if rows else None

    def get_many(self, hook_ids: Sequence[str], *, due_at: int) -> dict[str, Webhook]:
        """The subscriptions of `hook_ids` that exist, by id, each with whether a retry is due
        at `due_at` (`retry_due`), their backlogs not counted (0): the deliverer's read of
        every subscription woken at once (one statement for many, where each took its own),
        which reads a subscription's due retries only when there are some."""
        found: dict[str, Webhook] = {}
        for at in range(0, len(hook_ids), CHUNK):
            chunk = hook_ids[at : at + CHUNK]
            rows = self._sql(
                [
                    (
                        f"SELECT {_COLUMNS}, EXISTS (SELECT 1 FROM webhook_retries r "
                        "WHERE r.webhook = webhooks.id AND r.due <= ?) FROM webhooks "
                        f"WHERE id IN ({', '.join('?' * len(chunk))})",
                        (due_at, *chunk),
                    )
                ],
                write=False,
            )
            for row in rows:
                found[row[0]] = _webhook(row[:-1], retry_due=bool(row[-1]))
        return found

    def remove(self, hook_id: str) -> bool:
        """Remove a subscription and its pending retries; whether there was one."""
        rows = self._sql(
            [
                ("DELETE FROM webhook_retries WHERE webhook = ?", (hook_id,)),
                ("DELETE FROM webhooks WHERE id = ? RETURNING id", (hook_id,)),
            ],
            write=True,
        )
        return bool(rows)

    def replay(self, hook_id: str, after: int) -> None:
        """Deliver again every version after `after` (and resume a disabled subscription)."""
        self._sql(
            [
                (
                    "UPDATE webhooks SET cursor = ?, active = 1, failing_since = NULL WHERE id = ?",
                    (after, hook_id),
                )
            ],
            write=True,
        )

    def advance(self, rounds: Sequence[Advance]) -> None:
        """Keep the rounds of many subscriptions in one transaction (see Advance): a cursor and
        the retries it passed over go together, so none is lost and none is sent twice more.
        One transaction for every subscription that a commit woke, where each took its own
        (on PostgreSQL, a flush of the log each), and one statement for all their rows, where
        each took two (on PostgreSQL, a fifth of the deliverer's samples)."""
        self._sql(
            [
                *(
                    (
                        "INSERT INTO webhook_retries (webhook, seq, attempt, due, body) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (r.webhook, r.seq, r.attempt, r.due, r.body),
                    )
                    for done in rounds
                    for r in done.retries
                ),
                *(
                    _noted(
                        [(done.hook, done.cursor, done.note) for done in rounds[at : at + CHUNK]]
                    )
                    for at in range(0, len(rounds), CHUNK)
                ),
            ],
            write=True,
        )

    def due(self, hook_id: str, now: int, limit: int) -> list[Retry]:
        """Retries of a subscription that are due, oldest due first."""
        rows = self._sql(
            [
                (
                    "SELECT webhook, seq, attempt, due, body FROM webhook_retries "
                    "WHERE webhook = ? AND due <= ? ORDER BY due LIMIT ?",
                    (hook_id, now, limit),
                )
            ],
            write=False,
        )
        return [Retry(w, s, a, d, bytes(b)) for w, s, a, d, b in rows]

    def retried(self, retry: Retry, *, next_due: int | None) -> None:
        """After another attempt at `retry`: done (delivered, or given up when `next_due` is
        None after a failure; see `outcome`), or due again at `next_due`."""
        if next_due is None:
            statement: Statement = (
                "DELETE FROM webhook_retries WHERE webhook = ? AND seq = ?",
                (retry.webhook, retry.seq),
            )
        else:
            statement = (
                "UPDATE webhook_retries SET attempt = attempt + 1, due = ? "
                "WHERE webhook = ? AND seq = ?",
                (next_due, retry.webhook, retry.seq),
            )
        self._sql([statement], write=True)

    def outcome(self, hook_id: str, note: DeliveryNote) -> None:
        """Note how a round of attempts went (see DeliveryNote)."""
        self._sql([_noted([(hook_id, None, note)])], write=True)


#: A row of `_noted`'s values: the subscription, its cursor, whether its round succeeded, when,
#: the messages given up, whether it is disabled.
_NOTED_ROW = (
    "(?, CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS BIGINT), CAST(? AS INTEGER), "
    "CAST(? AS INTEGER))"
)


def _noted(rounds: Sequence[tuple[str, int | None, DeliveryNote | None]]) -> Statement:
    """The statement that keeps many subscriptions' rounds in their rows: for each, its new
    cursor (None: kept) and how its round went (None: nothing was sent). A success clears
    the failing streak, a failure starts one."""
    params: list[object] = []
    for hook_id, cursor, note in rounds:
        if note is None:
            params += [hook_id, cursor, None, None, 0, 0]
        else:
            success = 1 if note.success else 0
            params += [hook_id, cursor, success, note.now, note.given_up, 1 if note.disable else 0]
    return (
        "UPDATE webhooks SET cursor = coalesce(v.column2, cursor), "
        "last_success = CASE WHEN v.column3 = 1 THEN v.column4 ELSE last_success END, "
        "last_failure = CASE WHEN v.column3 = 0 THEN v.column4 ELSE last_failure END, "
        "failing_since = CASE WHEN v.column3 = 1 THEN NULL "
        "WHEN v.column3 = 0 THEN coalesce(failing_since, v.column4) ELSE failing_since END, "
        "given_up = given_up + v.column5, "
        "active = CASE WHEN v.column6 = 1 THEN 0 ELSE active END "
        f"FROM (VALUES {', '.join([_NOTED_ROW] * len(rounds))}) AS v "
        "WHERE webhooks.id = v.column1",
        params,
    )


def _webhook(row: Sequence[Any], backlog: int = 0, *, retry_due: bool = False) -> Webhook:
    hook_id, org, url, secret, created, active, cursor, success, failure, failing, given_up = row[
        :11
    ]
    return Webhook(
        hook_id,
        org,
        url,
        secret,
        created,
        bool(active),
        cursor,
        success,
        failure,
        failing,
        given_up,
        backlog,
        bool(row[11]),
        retry_due,
    )

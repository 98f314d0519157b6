"""PostgreSQL's write transaction (see WriteTx): its statements, bulk writes (binary COPY,
staging tables, arrays) and the order its locks are taken in. `postgres` owns the pool and
opens one of these on a writer's connection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors

from samtal.events import Event
from samtal.store._base import CallKey, CallRow, Gone, KnownCall, RecordRow
from samtal.store._sql import SqlTx

#: The channel a commit that gave out change numbers notifies, with its organisation.
CHANNEL = "samtal_changes"
_EVENT_COLUMNS = "org, day, id, call, instant, seq, type, party, number, kind, dialed, target, at"
#: The types of `_EVENT_COLUMNS`, for a binary COPY.
_EVENT_TYPES = ("text", "int4", "text", "text", "int8", "int8", *["text"] * 7)
#: The columns of a record's row and of a call's, in the order of RecordRow and CallRow (and
#: of the statements that upsert them from their staging tables), with their types for a
#: binary COPY.
_RECORD_COLUMNS = (
    "org, day, start_ms, call, start, change_seq, json, version, csv, outcome, caller_no, "
    "receiving_no, callee_no, duration, answered_after"
)
_RECORD_TYPES = ("text", "int4", "int8", "text", "int8", "int8", "bytea", "int4", "bytea",
                 *["text"] * 4, "int8", "int8")  # fmt: skip
_CALL_COLUMNS = (
    "org, call, day, age, record_ms, open, last_seen, version, seq, changed, started, ended"
)
_CALL_TYPES = ("text", "text", "int4", "int8", "int8", "bool", "int8", "int4", "int8", "int8",
               "bool", "bool")  # fmt: skip
#: Rows of a table that a write sends as arrays in its statement rather than staged (see
#: `PostgresTx._rows_from`).
ARRAYS_UP_TO = 200
#: The partitioned tables, each with a partition per day it holds calls of.
PARTITIONED = ("events", "records")


class PostgresTx(SqlTx):
    """One write transaction on a pooled connection (see WriteTx). Sets of keys go in as
    arrays, so that a batch of many organisations costs the same few statements as a batch of
    one. It remembers the day of every call it locked: each statement on a call's rows names
    its day, so that PostgreSQL looks in that day's partition alone."""

    db: psycopg.Connection[Any]
    placeholder = "%s"

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db
        self._days: dict[CallKey, int] = {}
        #: The staging tables this transaction has written to (see `_stage`).
        self._staged: set[str] = set()

    def lock_calls(self, keys: Sequence[CallKey]) -> dict[CallKey, KnownCall]:
        """Lock each call's row (making a placeholder for a call not seen before, which the
        transaction fills in or rolls back), in key order: two writers never wait for each
        other in a cycle. The calls seen before, with what is known of their record.

        A placeholder is not `open`: that index has no entry of it to write and then delete
        (nobody else sees it before the transaction gives it its values)."""
        keys = sorted(keys)
        orgs, calls = _by_column(keys) if keys else ([], [])
        made = set(
            self.db.execute(
                "INSERT INTO calls (org, call, day, age, record_ms, open, last_seen) "
                "SELECT k.org, k.call, 0, 0, NULL, false, 0 "
                "FROM unnest(%b::text[], %b::text[]) AS k(org, call) ORDER BY k.org, k.call "
                "ON CONFLICT DO NOTHING RETURNING org, call",
                (orgs, calls),
            ).fetchall()
        )
        # The rows of the calls seen before (the placeholders just made are this transaction's
        # own), each key looked up on its own (LATERAL: an index probe per key, in the keys'
        # order), never a join the planner may make by reading all of an organisation's calls.
        seen = [key for key in keys if key not in made]
        if not seen:
            return {}
        rows = self.db.execute(
            "SELECT c.org, c.call, c.day, c.record_ms, c.version, c.seq, c.changed, c.settled, "
            "c.erased FROM unnest(%b::text[], %b::text[]) AS k(org, call) CROSS JOIN LATERAL "
            "(SELECT * FROM calls c WHERE c.org = k.org AND c.call = k.call FOR UPDATE) c",
            _by_column(seen),
        ).fetchall()
        known: dict[CallKey, KnownCall] = {}
        for org, call, day, *rest in rows:
            self._days[org, call] = day
            known[org, call] = KnownCall(*rest)
        return known

    def insert_events(
        self, events: Sequence[Event], new_days: Mapping[CallKey, int]
    ) -> list[Event]:
        """Insert the events not stored before; the ones inserted.

        None of them is stored under its own call, which this transaction has locked (see
        WriteTx): they are copied straight into `events` (binary COPY). Only a copy under
        another call, which no lock orders, can be there already, or be written at this
        moment: then the COPY fails whole, and the batch is staged (binary COPY), then inserted
        in one statement that leaves out what is stored. Either way the events go in key
        order, so that writers of the same events wait for each other in one order; the
        staging path's second order (the statement's) could make a cycle, which PostgreSQL
        breaks (Contention: the batch is written again). Staging every batch (each row written
        twice, then read and sorted by the server) took `samtal import` 1.11x the time and
        `POST /events` 1.28x (`bench/postgres.py --against`), and a live stream's small
        batches of 100 1.21x (`bench/live.py --against`)."""
        first: dict[tuple[str, str], Event] = {}
        for event in events:
            first.setdefault((event.org, event.id), event)
        if not first:
            return []
        self._days.update(new_days)
        ordered = [first[key] for key in sorted(first)]
        try:
            with self.db.transaction(), self.db.cursor() as cursor:  # a savepoint
                self._copy_events(cursor, "events", ordered)
        except errors.UniqueViolation:
            return self._insert_staged(ordered)
        return ordered

    def _insert_staged(self, events: list[Event]) -> list[Event]:
        """Of these events (in key order, no two with one key), insert those not stored
        before, through a staging table; those."""
        with self.db.cursor() as cursor:
            self._stage(cursor, "events", _EVENT_COLUMNS, _EVENT_TYPES, self._event_rows(events))
            inserted = cursor.execute(
                f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} "
                "FROM staged_events ORDER BY org, id ON CONFLICT DO NOTHING RETURNING org, id"
            ).fetchall()
        by_key = {(e.org, e.id): e for e in events}
        return [by_key[org, event_id] for org, event_id in inserted]

    def _copy_events(self, cursor: psycopg.Cursor[Any], table: str, events: list[Event]) -> None:
        """`events`, each in its call's day, into `table` by binary COPY."""
        with cursor.copy(f"COPY {table} ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_EVENT_TYPES)
            for row in self._event_rows(events):
                copy.write_row(row)

    def _event_rows(self, events: list[Event]) -> Iterator[tuple[object, ...]]:
        """Each event's row, in the order of `_EVENT_COLUMNS`, in its call's day."""
        days = self._days
        for e in events:
            yield (e.org, days[e.org, e.call], e.id, e.call, e.instant, e.seq, e.type, e.party,
                   e.number, e.kind, e.dialed, e.target, e.at)  # fmt: skip

    def call_events(self, keys: Sequence[CallKey]) -> dict[CallKey, list[Event]]:
        """Every stored event of each call (this transaction's included). Each call's are
        looked up on their own, in its day's partition: `OFFSET 0` keeps PostgreSQL from
        flattening the LATERAL into a join, which it costed as a probe of every partition a
        key and, for 800 to 1,500 calls of 30 days, made a merge join over every event
        (730 ms, against 8-13 ms)."""
        stored: dict[CallKey, list[Event]] = {}
        if not keys:
            return stored
        orgs, calls = _by_column(keys)
        days = [self._days[key] for key in keys]
        for org, call, event_id, instant, seq, type_, party, number, kind, at in self.db.execute(
            "SELECT e.org, e.call, e.id, e.instant, e.seq, e.type, e.party, e.number, e.kind, "
            "e.at FROM unnest(%b::text[], %b::int[], %b::text[]) AS k(org, day, call) "
            "CROSS JOIN LATERAL (SELECT * FROM events e "
            "WHERE e.org = k.org AND e.day = k.day AND e.call = k.call OFFSET 0) e",
            (orgs, days, calls),
        ):
            stored.setdefault((org, call), []).append(
                Event(org, event_id, call, at, type_, seq, party, number, kind, instant=instant)
            )
        return stored

    def record_json(self, where: Sequence[Gone]) -> dict[CallKey, tuple[bytes, str | None]]:
        """The stored rendering and outcome of each of these records (those that exist)."""
        if not where:
            return {}
        orgs, starts, calls = _by_column(where)
        days = [self._days[org, call] for org, _, call in where]
        with self.db.cursor(binary=True) as cursor:
            rows = cursor.execute(
                "SELECT r.org, r.call, r.json, r.outcome FROM unnest(%b::text[], %b::int[], "
                "%b::bigint[], %b::text[]) AS k(org, day, start_ms, call) CROSS JOIN LATERAL "
                "(SELECT * FROM records r WHERE r.org = k.org AND r.day = k.day "
                "AND r.start_ms = k.start_ms AND r.call = k.call OFFSET 0) r",
                (orgs, days, starts, calls),
            ).fetchall()
        return {(org, call): (json, outcome) for org, call, json, outcome in rows}

    def erase(self, org: str, calls: Sequence[tuple[str, int, int]], now: int) -> None:
        """Delete the calls' events, each in its day's partition, and mark them erased (see
        WriteTx)."""
        if not calls:
            return
        names = [call for call, _, _ in calls]
        self.db.execute(
            "DELETE FROM events e USING unnest(%b::text[], %b::int[]) AS k(call, day) "
            "WHERE e.org = %s AND e.day = k.day AND e.call = k.call",
            (names, [self._days[org, call] for call in names], org),
        )
        self.db.execute(
            "UPDATE calls c SET erased = true, record_ms = NULL, open = false, settled = true, "
            "version = k.version, seq = k.seq, moved_from = NULL, "
            "changed = CASE WHEN c.seq = k.seq THEN c.changed ELSE %s END "
            "FROM unnest(%b::text[], %b::int[], %b::bigint[]) AS k(call, version, seq) "
            "WHERE c.org = %s AND c.call = k.call",
            (now, names, [v for _, v, _ in calls], [q for _, _, q in calls], org),
        )

    def take_change_seqs(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Reserve change numbers of each organisation; the first of each. The organisations'
        rows stay locked until the commit (taken in name order): numbers are handed out in
        commit order. The commit notifies the waiting feed readers of every process."""
        names = sorted(counts)
        with self.db.pipeline():  # the three statements in one round trip
            self.db.execute(
                "SELECT name FROM orgs WHERE name = ANY(%b) ORDER BY name FOR UPDATE", (names,)
            )
            taken = self.db.execute(
                "UPDATE orgs o SET change_seq = o.change_seq + k.n "
                "FROM unnest(%b::text[], %b::bigint[]) AS k(name, n) WHERE o.name = k.name "
                "RETURNING o.name, o.change_seq",
                (names, [counts[name] for name in names]),
            )
            # Delivered at the commit, once per organisation.
            self.db.execute(
                "SELECT pg_notify(%s, k) FROM unnest(%b::text[]) AS k", (CHANNEL, names)
            )
        return {name: int(last) - counts[name] + 1 for name, last in taken.fetchall()}

    def write(
        self,
        records: Sequence[RecordRow],
        gone: Sequence[Gone],
        calls: Sequence[CallRow],
        forget: Sequence[CallKey] = (),
        numbered: Mapping[str, int] | None = None,
    ) -> None:
        """Move the rows of calls whose day changed, delete `gone` records, upsert `records`
        and `calls`, delete the placeholders in `forget`. Many rows are staged (binary COPY)
        before the new versions' numbers are reserved (see WriteTx): from then on to the
        commit, which other writers of the organisations wait for, only two statements run,
        in the server. Holding the reservation while the client staged the rows (its Python
        sharing one GIL with the other writers) had the batches of an import written one
        after another: 18.3 s of its 20.7. A few rows (`ARRAYS_UP_TO`) go as arrays in the two
        statements themselves, which psycopg dumps in C, while the numbers are held, for well
        under a millisecond; that spares two COPYs' round trips (a live stream's batches of
        100: 0.88x the time)."""
        days = self._days
        with self.db.cursor() as cursor:
            moves = [
                (c, days[c.org, c.call]) for c in calls if days.get((c.org, c.call), c.day) != c.day
            ]
            for row, old_day in moves:  # rare: a late `started` from another date
                for table in PARTITIONED:
                    cursor.execute(
                        f"UPDATE {table} SET day = %s WHERE org = %s AND day = %s AND call = %s",
                        (row.day, row.org, old_day, row.call),
                    )
                days[row.org, row.call] = row.day
            if gone:
                cursor.executemany(
                    "DELETE FROM records WHERE org = %s AND day = %s AND start_ms = %s "
                    "AND call = %s",
                    [(org, days[org, call], ms, call) for org, ms, call in gone],
                )
            record_rows = self._rows_from(
                cursor, "records", _RECORD_COLUMNS, _RECORD_TYPES, records
            )
            call_rows = self._rows_from(cursor, "calls", _CALL_COLUMNS, _CALL_TYPES, calls)
            first = self.take_change_seqs(numbered) if numbered else {}
            # The k-th new version of an organisation, staged as -k, gets its number here.
            names = list(first)
            numbers = (names, [first[name] for name in names])
        # What is left goes in one round trip: no statement waits for another's answer.
        with self.db.pipeline(), self.db.cursor() as cursor:
            if records:
                source, arrays = record_rows
                cursor.execute(
                    "INSERT INTO records (org, day, start_ms, call, start, change_seq, json, "
                    "version, csv, outcome, caller_no, receiving_no, callee_no, duration, "
                    "answered_after) SELECT s.org, s.day, s.start_ms, s.call, s.start, "
                    "CASE WHEN s.change_seq < 0 THEN f.first - s.change_seq - 1 "
                    "ELSE s.change_seq END, s.json, s.version, s.csv, s.outcome, s.caller_no, "
                    "s.receiving_no, s.callee_no, s.duration, s.answered_after "
                    f"FROM {source} "
                    "LEFT JOIN unnest(%b::text[], %b::bigint[]) AS f(org, first) ON f.org = s.org "
                    "ON CONFLICT (org, start_ms, call, day) DO UPDATE "
                    "SET start = excluded.start, change_seq = excluded.change_seq, "
                    "json = excluded.json, version = excluded.version, csv = excluded.csv, "
                    "outcome = excluded.outcome, caller_no = excluded.caller_no, "
                    "receiving_no = excluded.receiving_no, callee_no = excluded.callee_no, "
                    "duration = excluded.duration, answered_after = excluded.answered_after",
                    (*arrays, *numbers),
                )
            if calls:
                source, arrays = call_rows
                cursor.execute(
                    "INSERT INTO calls (org, call, day, age, record_ms, open, last_seen, version, "
                    "seq, changed, started, ended) SELECT s.org, s.call, s.day, s.age, "
                    "s.record_ms, s.open, s.last_seen, s.version, "
                    "CASE WHEN s.seq < 0 THEN f.first - s.seq - 1 ELSE s.seq END, s.changed, "
                    f"s.started, s.ended FROM {source} "
                    "LEFT JOIN unnest(%b::text[], %b::bigint[]) AS f(org, first) ON f.org = s.org "
                    "ON CONFLICT (org, call) DO UPDATE SET day = excluded.day, "
                    "age = excluded.age, record_ms = excluded.record_ms, "
                    "open = excluded.open, last_seen = excluded.last_seen, "
                    "version = excluded.version, "
                    "moved_from = CASE WHEN excluded.seq = calls.seq THEN calls.moved_from END, "
                    "seq = excluded.seq, changed = excluded.changed, "
                    "started = excluded.started, ended = excluded.ended, settled = false",
                    (*arrays, *numbers),
                )
            if forget:
                cursor.executemany("DELETE FROM calls WHERE org = %s AND call = %s", forget)

    def _rows_from(
        self,
        cursor: psycopg.Cursor[Any],
        table: str,
        columns: str,
        types: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> tuple[str, list[list[Any]]]:
        """Where a statement reads `rows` of `table` from (as `s`), and the parameters that
        takes. Up to `ARRAYS_UP_TO` rows go in the statement itself, one array a column: no
        round trip of their own. More are staged (see `_stage`), whose binary COPY dumps each
        value in C."""
        if len(rows) > ARRAYS_UP_TO:
            self._stage(cursor, table, columns, types, rows)
            return f"staged_{table} s", []
        arrays = ", ".join(f"%b::{kind}[]" for kind in types)
        return f"unnest({arrays}) AS s({columns})", _by_column(rows)

    def _stage(
        self,
        cursor: psycopg.Cursor[Any],
        table: str,
        columns: str,
        types: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """`rows` (in the order of `columns`) into `staged_<table>`, empty before, by binary
        COPY: each value is dumped in C, where arrays for `unnest` were built value by value in
        Python (10% of an import's time)."""
        staged = f"staged_{table}"
        if staged in self._staged:  # used before in this transaction
            cursor.execute(f"TRUNCATE {staged}")
        self._staged.add(staged)
        with cursor.copy(f"COPY {staged} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def settle(self, last_seen_before: int) -> int:
        """Note the calls that have settled (see WriteTx)."""
        orgs = [name for (name,) in self.db.execute("SELECT name FROM orgs")]
        return self.db.execute(
            "UPDATE calls SET settled = true WHERE org = ANY(%b) AND ended AND NOT settled "
            "AND record_ms IS NOT NULL AND last_seen <= %s",
            (orgs, last_seen_before),
        ).rowcount

    def records_to_fill(self, limit: int) -> list[tuple[str, str, int]]:
        """Calls whose record has no outcome yet (stored before schema 7)."""
        orgs = [name for (name,) in self.db.execute("SELECT name FROM orgs")]
        return self.db.execute(
            "SELECT org, call, start_ms FROM records WHERE org = ANY(%b) AND outcome IS NULL "
            "LIMIT %s",
            (orgs, limit),
        ).fetchall()

    def fill(self, rows: Sequence[tuple[str, int, str, str, int, int | None]]) -> None:
        """Store outcome and durations beside records stored before them: one statement for
        each day's records, the day a constant, so that PostgreSQL goes to that partition and
        finds them by its key. (One UPDATE a record took 58% of an upgrade's filling; one
        statement for the whole batch read every partition whole.)"""
        by_day: dict[int, list[tuple[str, int, str, str, int, int | None]]] = {}
        for row in rows:
            by_day.setdefault(self._days[row[0], row[2]], []).append(row)
        for day, found in by_day.items():
            orgs, ms, calls, outcomes, durations, answered = _by_column(found)
            self.db.execute(
                "UPDATE records r SET outcome = v.outcome, duration = v.duration, "
                "answered_after = v.answered FROM unnest(%b::text[], %b::bigint[], %b::text[], "
                "%b::text[], %b::bigint[], %b::bigint[]) "
                "AS v(org, start_ms, call, outcome, duration, answered) "
                "WHERE r.day = %b AND r.org = v.org AND r.start_ms = v.start_ms "
                "AND r.call = v.call",
                (orgs, ms, calls, outcomes, durations, answered, day),
            )

    def stale_calls(self, last_seen_before: int, limit: int) -> list[tuple[str, str, int, str]]:
        """At most `limit` open calls idle since `last_seen_before`, locked, with the instant
        and `at` of their latest event; every organisation in one statement."""
        orgs = [name for (name,) in self.db.execute("SELECT name FROM orgs ORDER BY name")]
        return self.db.execute(
            "SELECT c.org, c.call, e.instant, e.at FROM ("
            "  SELECT org, call, day FROM calls WHERE org = ANY(%b) AND open "
            "  AND last_seen <= %s ORDER BY org, call LIMIT %s FOR UPDATE"
            ") c CROSS JOIN LATERAL ("
            "  SELECT instant, at FROM events WHERE org = c.org AND day = c.day "
            "  AND call = c.call ORDER BY instant DESC LIMIT 1"
            ") e",
            (orgs, last_seen_before, limit),
        ).fetchall()


def _by_column(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays an `unnest(...)` statement takes."""
    return [list(column) for column in zip(*rows, strict=True)]

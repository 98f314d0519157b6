"""The records of a period as the figures read them, from the customer's copy (the table
`samtal sync` keeps): its columns, never the records' rendering."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from samtal.errors import UsageError
from samtal.stats.figures import Row
from samtal.sync import column_instant, reason, shown, split_name, tables, target_url
from samtal.times import MAX_INSTANT, MIN_INSTANT, US_PER_MS, from_datetime, to_datetime, zone


def rows_in_copy(url: str, table: str, *, start: int, end: int) -> Iterator[Row]:
    """What the figures read of each record of the copy at `url` whose start is in [start,
    end), from its columns (its `start` column finds them, a millisecond wide)."""
    engine = open_copy(url, table)
    _, records, _ = tables(table)
    zoned = engine.dialect.name == "postgresql"
    utc = zone("UTC")
    # A period may reach past the instants a record can have (the calendar's first and last
    # days, where a datetime cannot be had in every zone): no record lies there.
    start, end = max(start, MIN_INSTANT + US_PER_MS), min(end, MAX_INSTANT)
    low = column_instant(to_datetime(start, utc) - timedelta(milliseconds=1), zoned=zoned)
    high = column_instant(to_datetime(end, utc), zoned=zoned)
    c = records.c
    query = sa.select(c.start, c.receiving_no, c.callee_answered, c.stop).where(
        c.start >= low, c.start < high
    )
    try:
        with engine.connect() as db:
            for began, group, answered, stopped in db.execution_options(yield_per=5000).execute(
                query
            ):
                first = _instant(began)
                yield Row(
                    first,
                    group,
                    None if answered is None else _instant(answered) - first,
                    _instant(stopped) - first,
                )
    finally:
        engine.dispose()


def copy_span(url: str, table: str) -> tuple[datetime, datetime] | None:
    """The first and last start the copy holds (UTC), or None when it holds nothing."""
    engine = open_copy(url, table)
    _, records, _ = tables(table)
    try:
        with engine.connect() as db:
            first, last = db.execute(
                sa.select(sa.func.min(records.c.start), sa.func.max(records.c.start))
            ).one()
    finally:
        engine.dispose()
    if first is None:
        return None
    return _aware(first), _aware(last)


def _aware(moment: datetime) -> datetime:
    """A timestamp column's value as an aware instant (UTC where the column has no zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _instant(moment: datetime) -> int:
    return from_datetime(_aware(moment))


def open_copy(url: str, table: str) -> sa.Engine:
    """The database of the copy at `url`; UsageError, in one line, when there is no copy there
    (and nothing is made: a mistyped SQLite path stays absent)."""
    target = target_url(url)
    if target.get_backend_name() == "sqlite":
        path = target.database
        if not path or path == ":memory:" or not Path(path).is_file():
            raise UsageError(f"no copy at {shown(url)}: no such file (make one with `samtal sync`)")
    engine = sa.create_engine(target)
    try:
        schema, name = split_name(table)
        inspector = sa.inspect(engine)
        present = inspector.has_table(name, schema=schema)
        columns = (
            {c["name"] for c in inspector.get_columns(name, schema=schema)} if present else set()
        )
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        raise UsageError(f"cannot read the copy at {shown(url)}: {reason(exc)}") from None
    if not present:
        engine.dispose()
        raise UsageError(
            f"no copy at {shown(url)}: it has no table {table!r} (make one with "
            "`samtal sync`, or name the table with --table)"
        )
    missing = [column for column in READ if column not in columns]
    if missing:
        engine.dispose()
        raise UsageError(
            f"the table {table!r} at {shown(url)} is not a copy samtal keeps (it has no "
            f"{', '.join(missing)} column): name the copy with --table"
        )
    return engine


#: The copy's columns the figures read.
READ = ("start", "receiving_no", "callee_answered", "stop")

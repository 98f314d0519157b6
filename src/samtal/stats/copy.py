"""The calls of a period, read from the customer's copy (the table `samtal sync` keeps)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from samtal.errors import UsageError, shorten
from samtal.records import Record
from samtal.sync import column_instant, tables, target_url
from samtal.times import parse_instant, to_datetime, zone


def calls_in_copy(url: str, table: str, *, start: int, end: int) -> Iterator[Record]:
    """The calls of the copy at `url` whose start is in [start, end), from the records as
    served (the `record` column): the `start` column finds them, a millisecond wide."""
    engine = open_copy(url, table)
    _, records, _ = tables(table)
    zoned = engine.dialect.name == "postgresql"
    utc = zone("UTC")
    low = column_instant(to_datetime(start, utc) - timedelta(milliseconds=1), zoned=zoned)
    high = column_instant(to_datetime(end, utc), zoned=zoned)
    query = sa.select(records.c.record).where(records.c.start >= low, records.c.start < high)
    try:
        with engine.connect() as db:
            for (record,) in db.execution_options(yield_per=2000).execute(query):
                yield _call(record if isinstance(record, dict) else orjson.loads(record))
    finally:
        engine.dispose()


def open_copy(url: str, table: str) -> sa.Engine:
    """The database of the copy at `url`; UsageError, in one line, when there is no copy there
    (and nothing is made: a mistyped SQLite path stays absent)."""
    target = target_url(url)
    if target.get_backend_name() == "sqlite":
        path = target.database
        if not path or path == ":memory:" or not Path(path).is_file():
            raise UsageError(
                f"no copy at {shorten(url, 300)}: no such file (make one with `samtal sync`)"
            )
    engine = sa.create_engine(target)
    try:
        present = sa.inspect(engine).has_table(table)
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        orig = getattr(exc, "orig", None)
        reason = str(orig if orig is not None else exc).split("\n")[0]
        raise UsageError(
            f"cannot read the copy at {shorten(url, 300)}: {shorten(reason, 200)}"
        ) from None
    if not present:
        engine.dispose()
        raise UsageError(
            f"no copy at {shorten(url, 300)}: it has no table {table!r} (make one with "
            "`samtal sync`, or name the table with --table)"
        )
    return engine


def _call(record: dict[str, Any]) -> Record:
    def instant(name: str) -> int | None:
        text = record[name]
        return None if text is None else parse_instant(text)

    start, stop = instant("start"), instant("stop")
    assert start is not None and stop is not None, record
    return Record(
        "",
        record["id"],
        record["callerNo"],
        start,
        record["receivingNo"],
        instant("received"),
        record["calleeNo"],
        instant("calleeAnswered"),
        stop,
    )

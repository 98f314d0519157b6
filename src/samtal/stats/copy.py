"""The calls of a period, read from the customer's copy (the table `samtal sync` keeps)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from samtal.stats.figures import Call
from samtal.sync import column_instant, tables, target_url
from samtal.times import parse_instant, to_datetime, zone


def calls_in_copy(url: str, table: str, *, start: int, end: int) -> Iterator[Call]:
    """The calls of the copy at `url` whose start is in [start, end), from the records as
    served (the `record` column): the `start` column finds them, a millisecond wide."""
    engine = sa.create_engine(target_url(url))
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


def _call(record: dict[str, Any]) -> Call:
    def instant(name: str) -> int | None:
        text = record[name]
        return None if text is None else parse_instant(text)

    start, stop = instant("start"), instant("stop")
    assert start is not None and stop is not None, record
    return Call(
        record["callerNo"],
        start,
        record["receivingNo"],
        instant("received"),
        record["calleeNo"],
        instant("calleeAnswered"),
        stop,
    )

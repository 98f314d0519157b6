"""Instants in C (see _instant.c): the events.md parser (samtal.times.parse_instant) and a
record's JSON with its times rendered (samtal.records.Record.json)."""

def parse(text: str, /) -> int | None: ...
def record_json(
    caller_no: str | None,
    receiving_no: str | None,
    callee_no: str | None,
    start: int,
    start_offset: int | None,
    received: int | None,
    received_offset: int | None,
    callee_answered: int | None,
    answered_offset: int | None,
    stop: int,
    stop_offset: int | None,
    /,
) -> bytes | None: ...

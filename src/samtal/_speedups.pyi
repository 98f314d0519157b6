"""samtal's speedups in C (see _speedups.c): each stands for a Python function that stays the
definition, and is used only where the extension was built."""

from array import array
from collections.abc import Iterable, Sequence

from samtal.events import Event, Rejection

def parse_instant(text: str, /) -> int | None: ...
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

record_csv = record_json  # the same arguments; a CSV row

def common(seen: array[int], mine: array[int], /) -> list[int]: ...
def calls_of(events: Iterable[Event], /) -> dict[str, dict[str, list[Event]]]: ...
def id_hashes(events: Sequence[Event], /) -> bytes: ...
def decode_lines(
    lines: Iterable[bytes],
    first_line: int,
    opens: bool,
    context: tuple[object, ...],
    events: list[Event],
    positions: list[int],
    rejections: list[Rejection],
    /,
) -> None: ...

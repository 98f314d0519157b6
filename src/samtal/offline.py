"""A whole file of events into its rendered records, with no store: `samtal aggregate`'s work,
spread over the machine's cores.

Each core takes a share of the calls. Every share reads every line with a light decode (its
`call` alone), keeps the lines whose call is its own, and does the whole work for them alone:
the full decode and validation (events.py), aggregation (aggregate.py) and rendering. The
shares' records are merged in record order and their rejections in line order.

A call's lines all go to one share, so each call is aggregated exactly as on one core. The one
thing no share can see alone is a duplicate whose copies name different calls (events.md: the
first copy counts, whichever call it names). Each share hands back a hash of each of its
events' (org, id); when two shares hold one, the file is aggregated again on one core, which is
the definition. (A collision of hashes costs only that second pass.)
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import os
from array import array
from collections.abc import Iterator
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from samtal.aggregate import aggregate
from samtal.events import BOM, Event, Rejection, decode_batch
from samtal.records import Record, dumps

#: Below this many bytes (about 30,000 events) one core finishes before more could start.
PARALLEL_FROM: Final = 4_000_000

Key = tuple[int, str, str]
#: A share's records (each its order key and its JSON), its rejections, and the hashes of its
#: events' (org, id).
Share = tuple[list[tuple[Key, bytes]], list[Rejection], "array[int]"]


class _Route(msgspec.Struct):
    """What decides a line's share, of whatever type the line gives it."""

    call: Any = None


_route = msgspec.json.Decoder(_Route).decode
# The file and the options, set before the shares are forked, which inherit them: forking
# also gives every share the same string hashes, which route the calls. The file stays one
# bytes object until each share splits it: lines made before the fork would be copied into
# every share as it counts references to them.
_work: tuple[bytes, ZoneInfo, bool, int] | None = None


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def aggregate_file(
    data: bytes, zone: ZoneInfo, *, outcome: bool = False, workers: int = 1
) -> tuple[list[bytes], list[Rejection]]:
    """The rendered records of NDJSON `data` (each a compact JSON object, in record order,
    with `outcome` after the seven fields when asked) and its rejections, in line order.

    `workers` above 1 spreads the work over that many processes, where the platform can fork;
    the answer is the same.
    """
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        shares = _in_shares(data, zone, outcome, workers)
        if shares is not None:
            return _join(shares)
    return _join([_share_of(data, zone, outcome, 0, 1)])


def _in_shares(data: bytes, zone: ZoneInfo, outcome: bool, workers: int) -> list[Share] | None:
    """The shares, or None when two of them hold events of one (org, id). Each share's ids are
    looked at as it comes in, while the others still work."""
    global _work
    _work = (data, zone, outcome, workers)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            shares: list[Share] = []
            seen: set[int] = set()
            for share in pool.imap_unordered(_forked_share, range(workers)):
                if not seen.isdisjoint(share[2]):
                    return None
                if len(shares) < workers - 1:  # the last one's ids need no keeping
                    seen.update(share[2])
                shares.append(share)
            return shares
    finally:
        _work = None


def _forked_share(share: int) -> Share:
    assert _work is not None, "set before the fork"
    data, zone, outcome, shares = _work
    return _share_of(data, zone, outcome, share, shares)


def _join(shares: list[Share]) -> tuple[list[bytes], list[Rejection]]:
    records = [json for _, json in heapq.merge(*(share[0] for share in shares))]
    rejections = sorted((r for share in shares for r in share[1]), key=lambda r: r.line)
    return records, rejections


def _share_of(data: bytes, zone: ZoneInfo, outcome: bool, share: int, shares: int) -> Share:
    """Share `share` of `shares`: the records of the calls whose hash falls to it, and the
    rejections of their lines (a line with no string `call` falls to share 0)."""
    # Every object made here lives to the end: the cyclic collector would only rescan them.
    gc.disable()
    events: list[Event] = []
    rejections: list[Rejection] = []
    route, DecodeError = _route, msgspec.DecodeError
    for first, lines in _pieces(data):
        if shares == 1:
            decoded = decode_batch(lines, first)
        else:
            mine: list[bytes] = []
            positions: list[int] = []
            keep, keep_position = mine.append, positions.append
            for position, line in enumerate(lines, first):
                try:
                    call = route(line.removeprefix(BOM) if position == 1 else line).call
                except (DecodeError, RecursionError):
                    call = None
                if (hash(call) % shares if type(call) is str else 0) == share:
                    keep(line)
                    keep_position(position)
            decoded = decode_batch(mine, opens=positions[:1] == [1])
            decoded.rejections = [
                msgspec.structs.replace(r, line=positions[r.line - 1]) for r in decoded.rejections
            ]
        events += decoded.events
        rejections += decoded.rejections
    ids = array("q", [hash((event.org, event.id)) for event in events] if shares > 1 else [])
    records = aggregate(events)
    rendered = [(record.order_key(), _json(record, zone, outcome)) for record in records]
    return rendered, rejections, ids


def _pieces(data: bytes, size: int = 1 << 20) -> Iterator[tuple[int, list[bytes]]]:
    """The lines of `data` a piece of about `size` bytes at a time, each piece with the number
    of its first line: lines made a piece at a time are freed a piece at a time, and their
    memory is used again (all at once, they cost a share as much memory as its events)."""
    start, number = 0, 1
    while start < len(data):
        end = data.find(b"\n", start + size)
        end = len(data) if end < 0 else end + 1
        lines = data[start:end].split(b"\n")
        if data[end - 1 : end] == b"\n":
            lines.pop()  # what follows the piece's last newline is the next piece's
        yield number, lines
        number += len(lines)
        start = end


def _json(record: Record, zone: ZoneInfo, outcome: bool) -> bytes:
    fields = record.render(zone)
    if outcome:
        fields["outcome"] = record.outcome
    return dumps(fields)

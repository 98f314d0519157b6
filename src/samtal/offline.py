"""A whole file of events into its rendered records, with no store: `samtal aggregate`'s work,
spread over the machine's cores.

Each core takes a share of the file: a run of whole lines, about as many bytes as the others'.
It decodes and validates its lines (events.py), aggregates their calls (aggregate.py) and
renders the records. The shares' records are merged in record order and their rejections in
line order.

Two things no share can see alone: a call whose events lie in more than one share (the calls
going on where a share ends, or an event sent again much later), and an id whose copies lie in
more than one share (events.md: the first copy counts, whichever call it names). So each share
first hands over a hash of each of its calls' (org, call) and of its events' (org, id); every
call that shows up in two shares, or that holds an id that does, is a call at the seam. Each
share then hands back the records of its other calls and the events of its calls at the seam,
as they are once its own duplicates are left out; this process aggregates those in file
order, which is the definition. (A collision of hashes only puts one more call at the seam.)

A switch's file is in time order, and only the calls going on where two shares meet are at a
seam. A file whose calls are scattered all over it (shuffled) has most of them at a seam: the
answer is the same, but the parent then aggregates most of the file alone (300k shuffled
events: 2.3 s on two cores, 2.0 s on one).

What crosses between the processes is kept cheap to make and to read, as the parent reads
it alone while the cores wait: the hashes go as arrays (and the parent finds those two shares
hold in C, where the extension was built), the records as two columns in msgpack (their order
keys and their JSON).
"""

from __future__ import annotations

import gc
import heapq
import mmap
import multiprocessing
import os
from array import array
from collections.abc import Callable, Iterator
from contextlib import suppress
from itertools import compress, pairwise
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from samtal.aggregate import calls_of, records_of
from samtal.events import Event, Rejection, decode_batch
from samtal.records import Record

#: Below this many bytes (about 30,000 events) one core finishes before more could start.
PARALLEL_FROM: Final = 4_000_000

#: The file: its bytes, or a read-only map of them (which forked shares read without a copy).
Data = bytes | mmap.mmap
Key = tuple[int, str, str]


class Made(NamedTuple):
    """A share's records in record order: each one's order key, and its JSON."""

    keys: list[Key]
    jsons: list[bytes]


#: What a share gives: its records and its rejections (lines counted in the file).
Share = tuple[Made, list[Rejection]]

_pack = msgspec.msgpack.Encoder().encode
_unpack_events = msgspec.msgpack.Decoder(list[Event]).decode
_unpack_made = msgspec.msgpack.Decoder(Made).decode
_ORG_AND_ID = attrgetter("org", "id")
# The file and the options, set before the shares are forked, which inherit them: forking
# also gives every share the same string hashes, which find the calls at the seams. The file
# stays one object until each share splits its own lines from it.
_work: tuple[Data, ZoneInfo, bool] | None = None


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def aggregate_file(
    data: Data, zone: ZoneInfo, *, outcome: bool = False, workers: int = 1
) -> tuple[list[bytes], list[Rejection]]:
    """The rendered records of NDJSON `data` (each a compact JSON object, in record order,
    with `outcome` after the seven fields when asked) and its rejections, in line order.

    `workers` above 1 spreads the work over that many processes, where the platform can fork;
    the answer is the same.
    """
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        return _join(_in_shares(data, zone, outcome, workers))
    events, rejections, _ = _decoded(data, 0, len(data))
    return _join([(_made(records_of(calls_of(events)), zone, outcome), rejections)])


def _in_shares(data: Data, zone: ZoneInfo, outcome: bool, workers: int) -> list[Share]:
    """The shares' records and rejections, and the records of the calls at their seams."""
    global _work
    _work = (data, zone, outcome)
    context = multiprocessing.get_context("fork")
    links: list[Connection] = []
    shares = []
    try:
        for start, stop in _spans(data, workers):
            here, there = context.Pipe()
            share = context.Process(target=_share, args=(there, start, stop), daemon=True)
            share.start()
            there.close()
            links.append(here)
            shares.append(share)
    finally:
        _work = None
    try:
        # Step 1: each share's hashes of its calls and ids; those that two shares hold.
        # All read before any is looked at: a share whose hashes wait in the pipe waits too.
        hashes = [_received(link) for link in links]
        seam_calls = _shared([calls for calls, _ in hashes])
        seam_ids = _shared([ids for _, ids in hashes])
        del hashes
        for link in links:
            link.send((seam_calls, seam_ids))
        # Step 2: each share's records and rejections (their lines counted from the share's
        # first), and the events of its calls at the seams; those, share after share, are in
        # file order.
        made: list[Share] = []
        seam: list[Event] = []
        lines_before = 0
        for link in links:
            packed, rejections, lines, packed_seam = _received(link)
            rejections = [
                msgspec.structs.replace(r, line=r.line + lines_before) for r in rejections
            ]
            made.append((_unpack_made(packed), rejections))
            seam += _unpack_events(packed_seam)
            lines_before += lines
        made.append((_made(records_of(calls_of(seam)), zone, outcome), []))
        return made
    finally:
        for link in links:
            link.close()
        for share in shares:
            share.join()


def _shared(arrays: list[array[int]]) -> set[int]:
    """The values that more than one of `arrays` holds."""
    shared: set[int] = set()
    earlier = array("q")
    for n, mine in enumerate(arrays):
        shared.update(_common(earlier, mine))
        if n < len(arrays) - 1:
            earlier.extend(mine)
    return shared


def _common_python(seen: array[int], mine: array[int]) -> list[int]:
    """The values of `mine` that `seen` holds too, in the order of `mine`: the definition of
    `common` in _speedups.c."""
    held = set(seen)
    return [value for value in mine if value in held]


def _common_in_c() -> Callable[[array[int], array[int]], list[int]] | None:
    """The values of an array that an earlier one holds, in C (_speedups.c): half a million
    against half a million in 0.02 s, where Python's sets took 0.2 s of a core that the shares
    needed. None where the build had no C compiler."""
    try:
        from samtal._speedups import common
    except ImportError:
        return None
    return common


_common = _common_in_c() or _common_python


def _id_hashes_python(events: list[Event]) -> array[int]:
    """`hash((event.org, event.id))` of each event: the definition of `id_hashes` in
    _speedups_events.c."""
    return array("q", map(hash, map(_ORG_AND_ID, events)))


def _id_hashes_in_c() -> Callable[[list[Event]], array[int]] | None:
    """The same in C: 0.03 s for half a million events, where Python took 0.11-0.13 s of a
    share's time. None where the build had no C compiler."""
    try:
        from samtal._speedups import id_hashes
    except ImportError:
        return None

    def hashes(events: list[Event]) -> array[int]:
        made = array("q")
        made.frombytes(id_hashes(events))
        return made

    return hashes


_id_hashes = _id_hashes_in_c() or _id_hashes_python


def _received(link: Connection) -> Any:
    """What a share sent; what went wrong there, raised here."""
    try:
        message = link.recv()
    except EOFError:
        raise RuntimeError("a share of the file ended without its answer") from None
    if isinstance(message, BaseException):
        raise message
    return message


def _share(link: Connection, start: int, stop: int) -> None:
    """A forked share: the lines of `data[start:stop]`, in two steps (see `_in_shares`)."""
    assert _work is not None, "set before the fork"
    data, zone, outcome = _work
    # Every object made here lives to the end: the cyclic collector would only rescan them.
    gc.disable()
    try:
        events, rejections, lines = _decoded(data, start, stop)
        calls = calls_of(events)
        # Hashed in file order, the order they lie in memory: in the order of their calls,
        # each event is a cache miss, which costs more than the hashing.
        ids = _id_hashes(events)
        held = [(org, call) for org, of_org in calls.items() for call in of_org]
        held_hashes = array("q", map(hash, held))
        link.send((held_hashes, ids))
        # While the others' hashes come together, every record is made: the calls at a seam
        # are few, and theirs are then left out.
        made = _made(records_of(calls), zone, outcome)
        seam_calls, seam_ids = link.recv()
        # The calls that hold an id another share holds too, and those another share holds.
        at_seam = {
            (event.org, event.call) for event in compress(events, map(seam_ids.__contains__, ids))
        }
        if seam_calls:
            at_seam.update(compress(held, map(seam_calls.__contains__, held_hashes)))
        if at_seam:
            kept = [n for n, key in enumerate(made.keys) if key[1:] not in at_seam]
            made = Made([made.keys[n] for n in kept], [made.jsons[n] for n in kept])
        # A call whose one event was a copy left out here has nothing to hand back.
        seam = [event for org, call in sorted(at_seam) for event in calls[org].get(call, ())]
        link.send((_pack(made), rejections, lines, _pack(seam)))
    except BaseException as exc:  # it crosses to the parent, which raises it
        with suppress(OSError):  # unless the parent has gone
            link.send(exc)
    finally:
        link.close()
        # The share's objects are left to the kernel, which takes back their memory at once:
        # freed one by one as the function returned, they kept the parent waiting for the
        # share's end 0.13 s after its last answer (half a million events a share).
        os._exit(0)


def _spans(data: Data, shares: int) -> list[tuple[int, int]]:
    """`data` cut into `shares` runs of whole lines of about as many bytes each (some empty,
    when there are fewer lines than shares)."""
    bounds = [0]
    for n in range(1, shares):
        cut = data.find(b"\n", max(bounds[-1], len(data) * n // shares))
        bounds.append(len(data) if cut < 0 else cut + 1)
    bounds.append(len(data))
    return list(pairwise(bounds))


def _join(shares: list[Share]) -> tuple[list[bytes], list[Rejection]]:
    if len(shares) == 1:
        records = shares[0][0].jsons
    else:
        merged = heapq.merge(*(zip(made.keys, made.jsons, strict=True) for made, _ in shares))
        records = [json for _, json in merged]
    rejections = sorted((r for share in shares for r in share[1]), key=lambda r: r.line)
    return records, rejections


def _decoded(data: Data, start: int, stop: int) -> tuple[list[Event], list[Rejection], int]:
    """The events of the lines of `data[start:stop]` in file order, their rejections (lines
    counted from the first of these) and how many lines there were."""
    events: list[Event] = []
    rejections: list[Rejection] = []
    first = 1
    for offset, lines in _pieces(data, start, stop):
        decoded = decode_batch(lines, first, opens=offset == 0)
        events += decoded.events
        rejections += decoded.rejections
        first += len(lines)
    return events, rejections, first - 1


def _made(records: list[Record], zone: ZoneInfo, outcome: bool) -> Made:
    """Records in record order, rendered."""
    return Made([r.order_key() for r in records], [_json(r, zone, outcome) for r in records])


def _pieces(
    data: Data, start: int, stop: int, size: int = 1 << 20
) -> Iterator[tuple[int, list[bytes]]]:
    """The lines of `data[start:stop]` (which begins a line) a piece of about `size` bytes at
    a time, each piece with the offset where it starts: lines made a piece at a time are freed
    a piece at a time, and their memory is used again (all at once, they cost a share as much
    memory as its events)."""
    while start < stop:
        end = data.find(b"\n", start + size, stop)
        end = stop if end < 0 else end + 1
        lines = data[start:end].split(b"\n")
        if data[end - 1 : end] == b"\n":
            lines.pop()  # what follows the piece's last newline is the next piece's
        yield start, lines
        start = end


def _json(record: Record, zone: ZoneInfo, outcome: bool) -> bytes:
    json = record.json(zone)
    return json[:-1] + b',"outcome":"%b"}' % record.outcome.encode() if outcome else json

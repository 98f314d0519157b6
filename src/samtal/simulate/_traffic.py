"""When calls arrive, and the interleaved stream of events a switch would send for them."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import orjson

from samtal.simulate._call import Call, SimEvent
from samtal.simulate._org import Organisation, build_organisation
from samtal.simulate._scenarios import play
from samtal.times import US_PER_SECOND, from_datetime, render, to_datetime, zone

HOUR = 3600 * US_PER_SECOND
#: Relative call volume by local hour on a working day: quiet nights, a morning busy hour
#: (09-10), a lunch dip, a second smaller peak after lunch, and a tail into the evening.
HOURLY = (
    0.002,
    0.001,
    0.001,
    0.001,
    0.001,
    0.003,
    0.010,
    0.040,
    0.100,
    0.135,
    0.120,
    0.100,
    0.060,
    0.095,
    0.105,
    0.090,
    0.070,
    0.035,
    0.015,
    0.008,
    0.006,
    0.004,
    0.003,
    0.002,
)
_HOURLY_SUM = sum(HOURLY)
#: A weekend day's volume as a share of a working day's.
WEEKEND = 0.06
#: The latest a delayed or re-sent event arrives after it happened.
MAX_DELAY = 60 * US_PER_SECOND


@dataclass(frozen=True)
class TrafficSettings:
    """What to simulate: how many organisations, which days, how busy, how messy."""

    orgs: int
    days: int
    seed: int
    start: date
    calls_per_day: float = 2000
    tz: str = "Europe/Stockholm"
    duplicates: float = 0.0
    disorder: float = 0.0


def _arrivals(rng: random.Random, day: date, settings: TrafficSettings) -> Iterator[int]:
    """Start instants of one organisation's calls on one local day: a Poisson process whose
    rate follows the local hour, walked hour by real hour so that a day with a clock change is
    23 or 25 hours long."""
    tz = zone(settings.tz)
    t = from_datetime(datetime.combine(day, datetime.min.time(), tz))
    end = from_datetime(datetime.combine(day + timedelta(days=1), datetime.min.time(), tz))
    per_hour_unit = settings.calls_per_day / _HOURLY_SUM
    while t < end:
        local = to_datetime(t, tz)
        next_t = min(
            t - (local.minute * 60 + local.second) * US_PER_SECOND - local.microsecond + HOUR, end
        )
        rate = per_hour_unit * HOURLY[local.hour] * (WEEKEND if local.weekday() >= 5 else 1.0)
        if rate > 0:
            at = t + rng.expovariate(rate) * HOUR
            while at < next_t:
                yield int(at) // 1000 * 1000  # the switch stamps to the millisecond
                at += rng.expovariate(rate) * HOUR
        t = next_t


def simulate_calls(settings: TrafficSettings) -> Iterator[tuple[Organisation, Call]]:
    """Every call that starts in the period, each simulated to its end, in order of start.

    Each organisation's day is drawn from random streams of its own (seed, organisation, date),
    and its calls are named by that date (`c-20170104-00001`), so a day comes out the same in
    every period that holds it: `samtal demo`, run again a day later into the same database,
    adds the new day's calls, and two periods that do not meet name no call alike.
    """

    def org_calls(index: int) -> Iterator[tuple[int, int, Organisation, Call]]:
        org = build_organisation(index, settings.seed)
        for offset in range(settings.days):
            day = settings.start + timedelta(days=offset)
            drawn = f"{settings.seed}:{index}:{day.isoformat()}"
            arrivals = random.Random(f"samtal-arrivals:{drawn}")
            behaviour = random.Random(f"samtal-calls:{drawn}")
            for n, start in enumerate(_arrivals(arrivals, day, settings), 1):
                call = Call(org.name, f"c-{day:%Y%m%d}-{n:05d}", start)
                play(call, behaviour, org)
                yield start, index, org, call

    merged = heapq.merge(
        *(org_calls(i) for i in range(1, settings.orgs + 1)), key=lambda item: (item[0], item[1])
    )
    for _start, _index, org, call in merged:
        yield org, call


def _line(org: str, call: str, event: SimEvent, tz_name: str) -> bytes:
    out: dict[str, object] = {
        "id": f"{call}.{event.seq}",
        "org": org,
        "call": call,
        "seq": event.seq,
        "at": render(event.at, zone(tz_name)),
        "type": event.type,
    }
    if event.type != "ended":
        out["party"] = event.party
        out["number"] = event.number
    for key, value in event.extra:
        out[key] = value
    return orjson.dumps(out, option=orjson.OPT_APPEND_NEWLINE)


def event_lines(
    settings: TrafficSettings, on_call: Callable[[Call], None] | None = None
) -> Iterator[bytes]:
    """The NDJSON lines of every simulated call's events, interleaved in time order as a switch
    sends them, a share delivered late and a share sent twice; `on_call` sees each call.

    Only calls in progress are held: an event is released once no call that has not started
    yet can produce an earlier one.
    """
    mess = random.Random(f"samtal-delivery:{settings.seed}")
    pending: list[tuple[int, int, str, str, SimEvent]] = []
    order = 0
    for org, call in simulate_calls(settings):
        if on_call is not None:
            on_call(call)
        while pending and pending[0][0] < call.t0:
            _, _, org_name, call_id, event = heapq.heappop(pending)
            yield _line(org_name, call_id, event, settings.tz)
        for event in call.events:
            delivery = event.at
            if settings.disorder and mess.random() < settings.disorder:
                delivery += mess.randrange(1, MAX_DELAY)
            order += 1
            heapq.heappush(pending, (delivery, order, org.name, call.id, event))
            if settings.duplicates and mess.random() < settings.duplicates:
                order += 1
                heapq.heappush(
                    pending,
                    (event.at + mess.randrange(1, MAX_DELAY), order, org.name, call.id, event),
                )
    while pending:
        _, _, org_name, call_id, event = heapq.heappop(pending)
        yield _line(org_name, call_id, event, settings.tz)

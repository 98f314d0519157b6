"""The filters of GET /cdr/historik (query.md, "Filters"): parsed and checked here, pure; the
store turns them into conditions on the columns it keeps beside each record.

Each parameter present must hold (AND); a parameter given several times holds when any of its
values does (OR). A value ending in `*` matches every value that starts with what comes before
it; an empty value matches null.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from samtal.errors import BadFilter, shorten
from samtal.records import OUTCOMES
from samtal.times import US_PER_SECOND

#: The filter parameters, as /cdr/historik takes them.
NUMBER_FIELDS = ("callerNo", "receivingNo", "calleeNo")
NAMES = (*NUMBER_FIELDS, "number", "outcome", "minDuration", "maxDuration")
#: The longest value a number filter takes: a number (64) and its `*`, or a pseudonym.
MAX_VALUE = 65
_DURATION = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")


@dataclass(frozen=True)
class Match:
    """One value of a number filter: equal to `value`, starting with it (`prefix`), or null
    (`value` None)."""

    value: str | None
    prefix: bool = False


@dataclass(frozen=True)
class Filters:
    """What a request asks of the records of its period; empty: every record."""

    #: Per field of the record (callerNo, receivingNo, calleeNo, or `number`: any of them),
    #: the values any of which must match.
    numbers: dict[str, tuple[Match, ...]] = field(default_factory=dict)
    outcomes: tuple[str, ...] = ()
    #: Bounds of stop - start, microseconds.
    min_duration: int | None = None
    max_duration: int | None = None
    #: The response groups a token is limited to (privacy.md): `receivingNo` is one of them.
    groups: tuple[str, ...] | None = None
    #: One more condition: any of these fields matches any of its values (what `number`
    #: becomes for a pseudonymizing token, whose fields hold different values).
    either: tuple[tuple[str, tuple[Match, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.numbers or self.outcomes) or (
            self.min_duration is not None
            or self.max_duration is not None
            or self.groups is not None
            or bool(self.either)
        )


def parse_filters(params: Mapping[str, Sequence[str]]) -> Filters:
    """The filters of a request's query (each name with all its values); UsageError naming the
    parameter for a value that is not one."""
    numbers = {
        name: tuple(_match(name, value) for value in params[name])
        for name in (*NUMBER_FIELDS, "number")
        if params.get(name)
    }
    outcomes = tuple(params.get("outcome", ()))
    for outcome in outcomes:
        if outcome not in OUTCOMES:
            raise BadFilter(
                f"`outcome` {shorten(outcome)} is not an outcome: use one of {', '.join(OUTCOMES)}"
            )
    low = _duration("minDuration", params.get("minDuration", ()))
    high = _duration("maxDuration", params.get("maxDuration", ()))
    if low is not None and high is not None and low > high:
        raise BadFilter(
            f"`minDuration` ({low / US_PER_SECOND:g} s) is greater than `maxDuration` "
            f"({high / US_PER_SECOND:g} s): no call can last both"
        )
    return Filters(numbers, outcomes, low, high)


def matches(match: Match, value: str | None) -> bool:
    """Whether one filter value matches a field's value."""
    if match.value is None:
        return value is None
    if value is None:
        return False
    return value.startswith(match.value) if match.prefix else value == match.value


def _match(name: str, value: str) -> Match:
    if len(value) > MAX_VALUE:
        raise BadFilter(
            f"`{name}` is {len(value):,} characters long: a number is at most 64 (and a `*`)"
        )
    if value == "":
        return Match(None)
    stem, star, rest = value.partition("*")
    if star and rest:
        raise BadFilter(
            f"`{name}` {shorten(value)} has a `*` before its end: a `*` may only end a value "
            "(`+4672*` matches every number that starts with +4672)"
        )
    return Match(stem, prefix=bool(star))


def _duration(name: str, values: Sequence[str]) -> int | None:
    """A duration bound in microseconds (the value, in seconds, a decimal number >= 0)."""
    if not values:
        return None
    if len(values) > 1:
        raise BadFilter(f"`{name}` is given {len(values)} times: give it once")
    text = values[0]
    if not _DURATION.fullmatch(text):
        raise BadFilter(
            f"`{name}` {shorten(text)} is not a duration: give seconds as a decimal number "
            "of at least 0, e.g. 30 or 2.5"
        )
    try:
        return int(Decimal(text) * US_PER_SECOND)
    except InvalidOperation:  # the pattern rules it out; said the same way
        raise BadFilter(f"`{name}` {shorten(text)} is not a duration") from None

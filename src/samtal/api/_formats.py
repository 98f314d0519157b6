"""The formats records are served in (spec/changes.md, "Formats"): JSON, NDJSON and CSV, chosen
by `format=`, else by `Accept`, else JSON; each streams a page of records at a time, and a
short answer goes in one piece."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final

from samtal.errors import NotAcceptable, UsageError, shorten
from samtal.records import FIELDS


@dataclass(frozen=True)
class Format:
    """A format: its `format=` name, its media type, and what that type is without params."""

    name: str
    media_type: str

    @property
    def base(self) -> str:
        return self.media_type.split(";")[0]


JSON: Final = Format("json", "application/json")
NDJSON: Final = Format("ndjson", "application/x-ndjson")
CSV: Final = Format("csv", "text/csv; charset=utf-8")
#: In the order the server prefers when the client likes several equally.
FORMATS: Final = (JSON, NDJSON, CSV)
#: An answer whose first page holds fewer records than this, and that has no second, is sent
#: in one piece (see `body`); a longer first page starts streaming at once.
ONE_PIECE_UNDER = 1000


def choose(format_name: str | None, accept: str | None) -> Format:
    """The format of an answer: `format=` if given (400 when unknown), else the best that
    `Accept` admits (406 when none), else JSON."""
    if format_name is not None:
        for candidate in FORMATS:
            if candidate.name == format_name.lower():
                return candidate
        raise UsageError(f"`format` {shorten(format_name)} is unknown: use json, ndjson or csv")
    if accept is None or not accept.strip():
        return JSON
    ranges = [_media_range(part) for part in accept.split(",") if part.strip()]
    best: tuple[float, Format] | None = None
    for candidate in FORMATS:
        quality = _quality(candidate, ranges)
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, candidate)
    if best is None:
        raise NotAcceptable(
            f"`Accept: {shorten(accept)}` admits none of the formats served here: "
            "application/json, application/x-ndjson or text/csv (or use format=)"
        )
    return best[1]


def _media_range(part: str) -> tuple[str, float]:
    """A media range of `Accept` and its quality (1 unless `q=` says otherwise)."""
    media, *params = (piece.strip() for piece in part.split(";"))
    quality = 1.0
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
    return media.lower(), quality


def _quality(candidate: Format, ranges: list[tuple[str, float]]) -> float:
    """How much the client likes `candidate`: the quality of the most specific range that
    matches it (RFC 9110, 12.5.1), 0 when none does."""
    kind = candidate.base.split("/")[0]
    specificity = {candidate.base: 3, f"{kind}/*": 2, "*/*": 1}
    matches = [(specificity[media], q) for media, q in ranges if media in specificity]
    return max(matches)[1] if matches else 0.0


async def stream(
    format_: Format, pages: AsyncIterator[list[bytes]], fields: tuple[str, ...] = FIELDS
) -> AsyncIterator[bytes]:
    """The records of `pages` in `format_`: for JSON and NDJSON, pages of rendered JSON
    objects; for CSV, pages of CSV rows, with `fields` for the header."""
    if format_ is JSON:
        yield b"["
        first = True
        async for page in pages:
            body = b",".join(page)
            yield body if first else b"," + body
            first = False
        yield b"]"
    elif format_ is NDJSON:
        async for page in pages:
            yield b"\n".join(page) + b"\n"
    else:
        # Pages of CSV rows, rendered when the records were made (see Store.csv_records).
        yield (",".join(fields) + "\r\n").encode()
        async for page in pages:
            yield b"".join(page)


async def body(
    format_: Format, pages: AsyncIterator[list[bytes]], fields: tuple[str, ...] = FIELDS
) -> bytes | AsyncIterator[bytes]:
    """The records of `pages` in `format_`, as `stream` gives them: in one piece when they are
    few (a first page shorter than ONE_PIECE_UNDER, and no second), else as that stream. An
    hour of an organisation's records went out as three writes, each through every layer of
    the server, and the answer's end waited for a turn of a reader thread."""
    ahead: list[list[bytes]] = []
    async for page in pages:
        ahead.append(page)
        if len(ahead) == 2 or len(page) >= ONE_PIECE_UNDER:
            return stream(format_, _chained(ahead, pages), fields)
    return b"".join([piece async for piece in stream(format_, _chained(ahead, pages), fields)])


async def _chained(
    ahead: Sequence[list[bytes]], pages: AsyncIterator[list[bytes]]
) -> AsyncIterator[list[bytes]]:
    """The pages of `ahead`, then the rest of `pages`."""
    for page in ahead:
        yield page
    async for page in pages:
        yield page

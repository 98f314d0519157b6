"""Request bodies of POST /events: media types, content encodings, the size limit, decoding.

The HTTP layer feeds a `Body` the chunks as they arrive; the body checks its type and encoding
up front, decompresses gzip as it goes and stops at the limit, so that nothing over the limit
is ever held whole, not even a small gzip that unpacks to gigabytes.
"""

from __future__ import annotations

import zlib

from samtal.errors import BadBody, TooLarge, UnsupportedMediaType, shorten
from samtal.events import UNREADABLE, Decoded, decode_array, decode_batch

#: What a body may be: NDJSON (also assumed without a type) or a JSON array.
NDJSON, JSON = "application/x-ndjson", "application/json"
MEDIA_TYPES = ("", NDJSON, JSON)
#: Content encodings taken: none, or gzip (which switches and bridges commonly send).
ENCODINGS = ("", "identity", "gzip", "x-gzip")


#: Why a body that is not UTF-8 text at all is refused.
_NOT_UTF8 = (
    "the body is not UTF-8 text: send NDJSON or a JSON array of events (compressed with gzip "
    "if you like, with `Content-Encoding: gzip`)"
)


#: Why a gzip body sent without saying so is refused.
_UNDECLARED_GZIP = (
    "the body is gzip, but its `Content-Encoding` does not say so: send it with "
    "`Content-Encoding: gzip`"
)


def _utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


class Body:
    """One request body being received: checked, decompressed and bounded as it is fed."""

    def __init__(self, content_type: str, content_encoding: str, *, limit: int) -> None:
        media = content_type.split(";")[0].strip().lower()
        if media not in MEDIA_TYPES:
            raise UnsupportedMediaType(
                f"content type {shorten(media)} is not taken here: send {NDJSON} (one event "
                f"per line) or {JSON} (an array of events)"
            )
        encoding = content_encoding.strip().lower()
        if encoding not in ENCODINGS:
            raise UnsupportedMediaType(
                f"content encoding {shorten(encoding)} is not supported: send the body as it "
                "is, or compressed with gzip (`Content-Encoding: gzip`)"
            )
        self.is_array = media == JSON
        self.limit = limit
        self._gunzip = _Gunzip() if encoding in ("gzip", "x-gzip") else None
        self._parts: list[bytes] = []
        self.size = 0  # bytes of the (decompressed) body so far

    def expect(self, declared: str | None) -> None:
        """TooLarge at once when a declared length of a plain body is over the limit."""
        if (
            self._gunzip is None
            and declared is not None
            and declared.isdigit()
            and int(declared) > self.limit
        ):
            raise self._too_large()

    def feed(self, chunk: bytes) -> int:
        """Take the next chunk as received; the number of body bytes it added."""
        if self._gunzip is not None:
            chunk = self._gunzip.feed(chunk, self.limit - self.size + 1)
        self.size += len(chunk)
        if self.size > self.limit:
            raise self._too_large()
        self._parts.append(chunk)
        return len(chunk)

    def decoded(self) -> Decoded:
        """The events and rejections of the whole body; BadBody when it is not events at all."""
        if self._gunzip is not None:
            self._gunzip.finish()
        body = b"".join(self._parts)
        self._parts.clear()
        if not body.strip(b" \t\r\n"):
            raise BadBody(
                "the body is empty: send events, as NDJSON (one per line) or a JSON array"
            )
        if self.is_array:
            if not _utf8(body):
                raise BadBody(self._not_utf8(body))
            try:
                results = decode_array(body)
            except ValueError as exc:
                raise BadBody(str(exc)) from None
            return Decoded.of(results, range(1, len(results) + 1))
        # Each line stands alone: one that is not UTF-8 is rejected with its number, as any
        # other line that is not an event, and the rest are taken (as a file's import and
        # JetStream take them). Only a body with no line of JSON at all is refused whole.
        decoded = decode_batch(body.split(b"\n"))
        if (
            not decoded.events
            and decoded.rejections
            and all(r.reason.startswith(UNREADABLE) for r in decoded.rejections)
        ):
            if not _utf8(body):
                raise BadBody(self._not_utf8(body))
            raise BadBody(
                "the body is not NDJSON: no line of it is JSON (send one event, a "
                "JSON object, per line)"
            )
        return decoded

    def _not_utf8(self, body: bytes) -> str:
        """Why a body that is not UTF-8 text is refused: often, gzip not declared."""
        if self._gunzip is None and body.startswith(b"\x1f\x8b"):  # gzip's first bytes
            return _UNDECLARED_GZIP
        return _NOT_UTF8

    def _too_large(self) -> TooLarge:
        what = "the body, decompressed," if self._gunzip is not None else "the body"
        return TooLarge(f"{what} is over the limit of {self.limit:,} bytes: send smaller batches")


class _Gunzip:
    """gzip decompression as chunks arrive, one or more members, never past a bound."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._empty = True

    def feed(self, chunk: bytes, most: int) -> bytes:
        """What `chunk` decompresses to: at most `most` bytes (more is over any limit)."""
        out = []
        self._empty = self._empty and not chunk
        try:
            while chunk and most > 0:
                data = self._inflate.decompress(chunk, most)
                out.append(data)
                most -= len(data)
                if self._inflate.unconsumed_tail:
                    chunk = self._inflate.unconsumed_tail  # stopped at `most`
                elif self._inflate.eof and self._inflate.unused_data:
                    chunk = self._inflate.unused_data  # the next gzip member
                    self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                else:
                    chunk = b""
        except zlib.error as exc:
            raise BadBody(f"the body is not valid gzip: {exc}") from None
        return b"".join(out)

    def finish(self) -> None:
        if not self._empty and not self._inflate.eof:
            raise BadBody("the gzip body ends early: send the whole compressed body")

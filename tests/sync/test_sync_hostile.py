"""`samtal sync` against a server (or something in between) that misbehaves (issue 13): every
bad answer is one line and a non-zero exit, nothing of it is written, and the copy goes on
from where it was against a correct server. The misbehaving server is an httpx MockTransport:
the one edge here that samtal does not own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from samtal.sync import MAX_PAGE_BYTES, Copy, Feed, SyncError, sync

RECORD = {
    "id": "c-1",
    "callerNo": "+4672111111",
    "start": "2017-01-04T16:16:04.274+01:00",
    "receivingNo": "622",
    "received": None,
    "calleeNo": None,
    "calleeAnswered": None,
    "stop": "2017-01-04T16:17:31.164+01:00",
    "version": 1,
    "seq": 5,
}


def _feed(answer: Callable[[httpx.Request], httpx.Response]) -> Feed:
    client = httpx.Client(base_url="http://server", transport=httpx.MockTransport(answer))
    return Feed("http://server", "token", attempts=1, sleep=lambda _: None, client=client)


def _page(records: list[dict[str, Any]], next_: Any, more: Any = False) -> bytes:
    # The standard library's encoder: it writes any integer, as a bad server might.
    return json.dumps({"records": records, "next": next_, "more": more}).encode()


def _run(copy: Copy, body: bytes) -> None:
    feed = _feed(lambda _: httpx.Response(200, content=body))
    for _ in sync(feed, copy):
        pass


BAD_ANSWERS = {
    "a cursor that is text": _page([], "1 or 1=1"),
    "malformed JSON": b'{"records": [',
    "a missing member": json.dumps({"records": [], "more": False}).encode(),
    "a seq of 2^70": _page([{**RECORD, "seq": 2**70}], 2**70),
    "a cursor going backwards": _page([], 3),
    "a record without its fields": _page([{"id": "c-1", "seq": 5, "version": 1}], 5),
    "a time that is not one": _page([{**RECORD, "start": "yesterday"}], 5),
    "a boolean for a number": _page([{**RECORD, "version": True}], 5),
    "more, and nothing": _page([], 4, True),
    "seqs out of order": _page([{**RECORD, "seq": 6}, {**RECORD, "id": "c-2", "seq": 5}], 6),
    "a tombstone of another shape": _page(
        [{"id": "c-1", "deleted": "yes", "version": 2, "seq": 5}], 5
    ),
    "not an object": b"[1, 2, 3]",
}


@pytest.mark.parametrize("what", list(BAD_ANSWERS))
def test_a_bad_answer_is_one_line_and_poisons_nothing(tmp_path: Path, what: str) -> None:
    copy = Copy(f"sqlite:///{tmp_path / 'copy.db'}", "http://server")
    copy.apply([], 4)  # a copy that has synced up to seq 4
    with pytest.raises(SyncError) as raised:
        _run(copy, BAD_ANSWERS[what])
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 400
    assert copy.cursor() == 4  # the bad answer never became the cursor
    # A correct server afterwards: the copy goes on from where it was.
    _run(copy, _page([RECORD], 5))
    assert copy.cursor() == 5
    copy.close()


def test_a_huge_answer_is_not_held(tmp_path: Path) -> None:
    """An answer past MAX_PAGE_BYTES is refused as it streams in, never held whole."""
    sent = 0

    def endless() -> Any:
        nonlocal sent
        chunk = b" " * 2**20
        while True:
            sent += len(chunk)
            yield chunk

    copy = Copy(f"sqlite:///{tmp_path / 'copy.db'}", "http://server")
    feed = _feed(lambda _: httpx.Response(200, content=endless()))
    with pytest.raises(SyncError, match="over 64 MiB"):
        for _ in sync(feed, copy):
            pass
    assert MAX_PAGE_BYTES < sent <= MAX_PAGE_BYTES + 2 * 2**20
    assert copy.cursor() == 0
    copy.close()


def test_a_retry_after_that_is_not_a_number_of_seconds_waits_a_second(tmp_path: Path) -> None:
    waited: list[float] = []
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "inf"}),
            httpx.Response(429, headers={"Retry-After": "1e300"}),
            httpx.Response(429, headers={"Retry-After": "99999999999999"}),
            httpx.Response(200, content=_page([RECORD], 5)),
        ]
    )
    client = httpx.Client(
        base_url="http://server", transport=httpx.MockTransport(lambda _: next(answers))
    )
    feed = Feed("http://server", "t", attempts=1, sleep=waited.append, client=client)
    assert feed.page(0) is not None
    assert waited == [1.0, 1.0, 86_400.0]


def test_stats_on_no_copy_says_so_in_one_line_and_makes_nothing(tmp_path: Path) -> None:
    from tests.helpers import samtal

    missing = tmp_path / "mistyped.db"
    done = samtal(
        "stats", "--db", f"sqlite:///{missing}", "--from", "2017-01-04", "--format", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: no copy at 'sqlite:///{missing}': no such file (make one with `samtal sync`)"
    )
    assert not missing.exists()
    (tmp_path / "other.db").write_bytes(b"")  # a database, but not a copy
    done = samtal(
        "stats", "--db", f"sqlite:///{tmp_path / 'other.db'}", "--from", "2017-01-04",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "has no table 'call_records'" in done.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://bob:s3cret@127.0.0.1:1/copy", "connection failed"),
        ("mysql://bob:s3cret@127.0.0.1:1/copy", "Can't connect to MySQL server"),
        ("postgresql://bob:s3cret@127.0.0.1:port/copy", "is not a database URL"),
    ],
)
def test_a_copy_that_cannot_be_opened_is_said_without_its_password(
    tmp_path: Path, url: str, said: str
) -> None:
    """Errors land in terminals, cron mails and logs: a copy's URL is quoted with its password
    as ***, on one line, in the database's own words."""
    from tests.helpers import samtal

    (tmp_path / "token").write_text("samtal_r_x")
    for args in (
        ("sync", "--from", "http://127.0.0.1:9", "--into", url, "--token-file", "token"),
        ("stats", "--db", url, "--from", "2017-01-04"),
    ):
        done = samtal(*args, cwd=tmp_path)
        assert done.returncode == 1
        assert "s3cret" not in done.stderr + done.stdout
        [line] = done.stderr.strip().splitlines()
        assert "bob:***@127.0.0.1" in line and said in line, line
        assert "sqlalche.me" not in line  # SQLAlchemy's link to its own documentation

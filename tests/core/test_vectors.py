"""Every worked vector of the spec, exactly: same values, same field order."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import orjson
import pytest

from samtal.aggregate import aggregate
from samtal.events import Event, decode_one
from samtal.records import OUTCOMES
from samtal.times import zone
from tests.helpers import DOCS_HERE, DOCS_SHARED, VECTORS, VECTORS_HERE, VECTORS_SHARED

IDS = [v["name"] for v in VECTORS]


def test_there_are_vectors() -> None:
    assert len(VECTORS) >= 20


BESIDE = "the spec (../shared/spec) is not beside this checkout: nothing to compare the copies with"


@pytest.mark.skipif(not VECTORS_SHARED.is_dir(), reason=BESIDE)
def test_copies_match_the_spec() -> None:
    shared = {p.name: p.read_bytes() for p in VECTORS_SHARED.glob("*.json")}
    ours = {p.name: p.read_bytes() for p in VECTORS_HERE.glob("*.json")}
    assert ours == shared


@pytest.mark.skipif(not DOCS_SHARED.is_dir(), reason=BESIDE)
def test_the_contract_in_docs_matches_the_spec() -> None:
    """The README points readers at docs/spec: it must say what the spec says."""
    shared = {p.name: p.read_bytes() for p in DOCS_SHARED.glob("*.md")}
    ours = {p.name: p.read_bytes() for p in DOCS_HERE.glob("*.md")}
    assert ours == shared


def test_the_contract_is_in_the_repository() -> None:
    assert {"events.md", "cdr.md", "api.md", "changes.md"} <= {
        p.name for p in DOCS_HERE.glob("*.md")
    }


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_library(vector: dict[str, Any]) -> None:
    events = [decode_one(orjson.dumps(e), n) for n, e in enumerate(vector["events"], 1)]
    assert all(isinstance(e, Event) for e in events)
    rendered = [r.render(zone(vector["tz"])) for r in aggregate(events)]  # type: ignore[arg-type]
    # Compare as text so that field order counts too.
    assert json.dumps(rendered) == json.dumps(vector["expected"])


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_outcomes(vector: dict[str, Any]) -> None:
    """query.md: every record's outcome, as the vector gives it, aligned with `expected`."""
    events = [decode_one(orjson.dumps(e), n) for n, e in enumerate(vector["events"], 1)]
    records = aggregate(events)  # type: ignore[arg-type]
    assert [r.outcome for r in records] == vector["outcomes"]


def test_a_call_the_pbx_closed_is_unanswered() -> None:
    """The one outcome no vector shows: the stop is `ended` (the switch's or a server's own
    for an idle call), nobody answered, no voicemail, nobody hung up."""
    vector = next(v for v in VECTORS if v["name"] == "direct-missed")
    raw = [e for e in vector["events"] if e["type"] in ("started", "ringing")]
    last = max(raw, key=lambda e: e["at"])
    raw.append({**last, "id": "closed", "type": "ended", "seq": 99})
    events = [decode_one(orjson.dumps(e), n) for n, e in enumerate(raw, 1)]
    (record,) = aggregate(events)  # type: ignore[arg-type]
    assert record.outcome == "unanswered" and record.outcome in OUTCOMES


@pytest.mark.slow
@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_cli(vector: dict[str, Any]) -> None:
    ndjson = "".join(json.dumps(e) + "\n" for e in vector["events"])
    done = subprocess.run(
        [sys.executable, "-m", "samtal", "aggregate", "--tz", vector["tz"]],
        input=ndjson.encode(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    out = json.loads(done.stdout)
    assert json.dumps(out) == json.dumps(vector["expected"])


def test_cli_exit_statuses(tmp_path: object) -> None:
    vector = VECTORS[0]
    lines = [json.dumps(e) for e in vector["events"]]
    bad = "\n".join([*lines[:2], "{oops", *lines[2:]]).encode()
    done = subprocess.run(
        [sys.executable, "-m", "samtal", "aggregate"], input=bad, capture_output=True, check=False
    )
    assert done.returncode == 1
    assert done.stderr.decode().startswith("line 3: not valid JSON")
    assert json.loads(done.stdout) == vector["expected"]  # the valid lines still count
    for usage in (["aggregate", "/no/such/file"], ["aggregate", "--tz", "Mars/Base"]):
        done = subprocess.run(
            [sys.executable, "-m", "samtal", *usage], input=b"", capture_output=True, check=False
        )
        assert done.returncode == 2, usage


def test_cli_prints_outcomes(tmp_path: object) -> None:
    vector = next(v for v in VECTORS if v["name"] == "product-description")
    ndjson = "".join(json.dumps(e) + "\n" for e in vector["events"])
    done = subprocess.run(
        [sys.executable, "-m", "samtal", "aggregate", "--outcome"],
        input=ndjson.encode(),
        capture_output=True,
        check=True,
    )
    printed = json.loads(done.stdout)
    assert [list(r) for r in printed] == [[*vector["expected"][0], "outcome"]] * 3
    assert [r.pop("outcome") for r in printed] == vector["outcomes"]
    assert printed == vector["expected"]

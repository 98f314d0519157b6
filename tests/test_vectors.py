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
from samtal.times import zone
from tests.vectors import HERE, SHARED, VECTORS

IDS = [v["name"] for v in VECTORS]


def test_there_are_vectors() -> None:
    assert len(VECTORS) >= 20


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is not beside this checkout")
def test_copies_match_the_spec() -> None:
    shared = {p.name: p.read_bytes() for p in SHARED.glob("*.json")}
    ours = {p.name: p.read_bytes() for p in HERE.glob("*.json")}
    assert ours == shared


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_library(vector: dict[str, Any]) -> None:
    events = [decode_one(orjson.dumps(e), n) for n, e in enumerate(vector["events"], 1)]
    assert all(isinstance(e, Event) for e in events)
    rendered = [r.render(zone(vector["tz"])) for r in aggregate(events)]  # type: ignore[arg-type]
    # Compare as text so that field order counts too.
    assert json.dumps(rendered) == json.dumps(vector["expected"])


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

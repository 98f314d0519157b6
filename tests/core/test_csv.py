"""CSV rows as the store renders them when a record is made (changes.md, "Formats"): any values
parse back with Python's csv module into exactly the JSON values, nulls as empty fields, and
the detailed row adds `id` first and `version`, `seq` last."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from samtal.records import csv_row, detailed_csv

values = st.lists(
    st.one_of(st.none(), st.text(max_size=12), st.sampled_from(['"', ",", "\r\n", "a,b", ""])),
    min_size=7,
    max_size=7,
)


def parsed(row: bytes) -> list[str]:
    (fields,) = csv.reader(io.StringIO(row.decode(), newline=""))
    return fields


@given(values, st.text(min_size=1, max_size=8), st.integers(1, 9), st.integers(1, 2**62))
def test_rows_parse_back(fields: list[str | None], call: str, version: int, seq: int) -> None:
    row = csv_row(fields)
    assert row.endswith(b"\r\n")
    expected = ["" if v is None else v for v in fields]
    assert parsed(row) == expected
    assert parsed(detailed_csv(call, row, version, seq, "abandoned")) == [
        call,
        *expected,
        str(version),
        str(seq),
        "abandoned",
    ]

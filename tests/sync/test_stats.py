"""`samtal stats` on a copy `samtal sync` made: the same numbers as GET /cdr/stats gives from the
server for the same records, with every choice; CSV as the endpoint's; the HTML report (its
charts, its definitions, its title, what it says of an empty period). The figures themselves
are proven in tests/core/test_figures.py; the report in a browser in tests/browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from samtal.cli import main
from tests.helpers.servers import Live

PERIOD = ["--from", "2017-01-04", "--to", "2017-01-05"]


@pytest.fixture
def copy(live: Live, tmp_path: Path) -> str:
    """A copy of the live server's records, made by `samtal sync`."""
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    synced = CliRunner().invoke(
        main, ["sync", "--from", live.url, "--into", target], env={"SAMTAL_TOKEN": live.read}
    )
    assert synced.exit_code == 0, synced.output
    return target


def served(live: Live, **params: str) -> httpx.Response:
    answer = httpx.get(
        live.url + "/cdr/stats",
        params={"from": "2017-01-04", "to": "2017-01-05", **params},
        headers={"Authorization": f"Bearer {live.read}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer


def stats(copy: str, *options: str) -> str:
    made = CliRunner().invoke(main, ["stats", "--db", copy, *PERIOD, *options])
    assert made.exit_code == 0, made.output
    return made.stdout_bytes.decode()  # as written (`output` turns CRLF into LF)


CHOICES = [
    ([], {}),
    (["--sl", "12.5"], {"sl": "12.5"}),
    (["--sl-base", "answered"], {"slBase": "answered"}),
    (["--short-abandon", "7"], {"shortAbandon": "7"}),
    (["--days", "3"], {"days": "3"}),
    (["--hours", "09:30-16:00"], {"hours": "09:30-16:00"}),
    (["--interval", "hour"], {"interval": "hour"}),
    (
        ["--threshold", "30", "--sl-base", "answered", "--short-abandon", "4", "--days", "1-5",
         "--hours", "08:00-17:00", "--interval", "15min"],
        {"sl": "30", "slBase": "answered", "shortAbandon": "4", "days": "1-5",
         "hours": "08:00-17:00", "interval": "15min"},
    ),
]  # fmt: skip


def test_the_command_gives_the_endpoints_numbers(live: Live, copy: str) -> None:
    for options, params in CHOICES:
        found = json.loads(stats(copy, *options, "--format", "json"))
        assert found == served(live, **params).json(), options
        assert found["calls"]["calls"] > 300
    as_csv = stats(copy, "--interval", "day", "--format", "csv")
    assert as_csv == served(live, interval="day", format="csv").text


def test_the_report(copy: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    stats(copy, "--interval", "hour", "--sl", "15", "--out", str(page))
    text = page.read_text()
    assert text.count("<svg") == 5  # the four charts and the interval chart
    assert "<title>Calls 2017-01-04 to 2017-01-05 (Europe/Stockholm)</title>" in text
    assert "T00:00" not in text.split("<body>")[1].split("<svg")[0]  # no raw timestamps
    assert "Your copy holds calls from 2017-01-04 to 2017-01-04" in text
    assert "Calls and service level (15 s) per hour" in text
    assert "answered by a person within 15 s of the start, divided by offered calls" in text
    assert "<script" not in text and "<link" not in text
    assert re.findall(r'(?:src|href)="(?!#)', text) == []  # nothing fetched from anywhere
    assert "<td>All groups</td>" in text
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # each chart's parts are its own, though each counts from 1
    assert set(re.findall(r'(?:href="#|url\(#)([^")]+)', text)) <= set(ids)
    again = tmp_path / "again.html"
    stats(copy, "--interval", "hour", "--sl", "15", "--out", str(again))
    assert again.read_bytes() == page.read_bytes()  # the same copy, the same report
    one_day = CliRunner().invoke(main, ["stats", "--db", copy, "--from", "2017-01-04",
                                        "--to", "2017-01-04"])  # fmt: skip
    assert "<title>Calls 2017-01-04 (Europe/Stockholm)</title>" in one_day.output
    morning = CliRunner().invoke(main, ["stats", "--db", copy, "--from", "2017-01-04 08:00",
                                        "--to", "2017-01-04 12:00"])  # fmt: skip
    assert "<title>Calls 2017-01-04 08:00 to 12:00 (Europe/Stockholm)</title>" in morning.output


def test_an_empty_period_says_so(copy: str) -> None:
    made = CliRunner().invoke(
        main, ["stats", "--db", copy, "--from", "2017-02-01", "--to", "2017-02-03"]
    )
    assert made.exit_code == 0
    assert "no calls in this period: the copy holds calls from 2017-01-04 to 2017-01-04" in (
        made.stderr
    )
    page = made.stdout
    assert "No calls in this period." in page
    assert "<svg" not in page  # no axes around nothing, no heat map that looks like data
    assert "Your copy holds calls from 2017-01-04 to 2017-01-04" in page
    assert "<title>Calls 2017-02-01 to 2017-02-03 (Europe/Stockholm)</title>" in page


def test_a_period_to_the_calendars_ends_is_read(copy: str) -> None:
    """A period from year 1 (Stockholm's midnight then was in year 0 in UTC) or to 9999-12-31
    ended in a traceback; it is every record the copy has, and the title keeps its four-digit
    years."""
    made = CliRunner().invoke(
        main, ["stats", "--db", copy, "--from", "0001-01-01", "--to", "9999-12-31"]
    )
    assert made.exit_code == 0, made.output
    assert "<title>Calls 0001-01-02 01:13:00 to 9999-12-31 00:59:59 (Europe/Stockholm)" in (
        made.stdout
    )
    found = json.loads(stats(copy, "--format", "json"))
    every = CliRunner().invoke(
        main, ["stats", "--db", copy, "--from", "0001-01-01", "--to", "9999-12-31", "--format",
               "json"],
    )  # fmt: skip
    assert json.loads(every.stdout)["calls"] == found["calls"]


def test_bad_choices_name_their_option(copy: str) -> None:
    made = CliRunner().invoke(main, ["stats", "--db", copy, *PERIOD, "--days", "0"])
    assert made.exit_code != 0 and "`days` '0' is not a list of ISO weekdays" in made.output


def test_a_report_that_cannot_be_written_says_why_in_one_line(copy: str, tmp_path: Path) -> None:
    nowhere = tmp_path / "no such folder" / "report.html"
    made = CliRunner().invoke(main, ["stats", "--db", copy, *PERIOD, "--out", str(nowhere)])
    assert made.exit_code == 1
    assert made.output.strip() == f"Error: cannot write {nowhere}: No such file or directory"


def test_a_table_that_is_no_copy_says_so_in_one_line(copy: str) -> None:
    """`--table` naming another table of the customer's was a traceback from the database."""
    import sqlalchemy as sa

    engine = sa.create_engine(copy)
    with engine.begin() as db:
        db.execute(sa.text("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)"))
    engine.dispose()
    made = CliRunner().invoke(main, ["stats", "--db", copy, *PERIOD, "--table", "customers"])
    assert made.exit_code != 0
    assert "the table 'customers' at" in made.output
    assert "is not a copy samtal keeps (it has no start, receiving_no" in made.output
    assert not isinstance(made.exception, sa.exc.SQLAlchemyError)

"""What naming an organisation by its name in every key costs ingest, against a number.

Every key of samtal's call data leads with `org`, the organisation's name (text). A B-tree
compares keys column by column: a name is compared as text, and on PostgreSQL a text column
first also means the columns after it cannot be found at fixed offsets in an index entry. This
runs the shaped floors (`ingest.py --shaped` on SQLite, `postgres.py --shaped` on PostgreSQL:
samtal's own schema filled with rows made with no logic) as they are, and with `org` a number
in each of the three tables (the same number in every row, as the name is the same), rounds
alternating which goes first, and prints each and the ratio of their times. Nothing else
differs: the same rows, keys, indexes and statements.

    python bench/keys.py [--rounds N] [--only sqlite|postgres]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import OUT, report
from ingest import import_events, shaped_insert
from postgres import shaped_copy
from query import two_months


def rounds_of(load: Callable[[bool], float], rounds: int) -> tuple[float, float, float]:
    """The medians of the named and the numbered loads' seconds, alternating which goes first;
    and the median of the rounds' ratios (numbered / named)."""
    named, numbered, ratios = [], [], []
    for n in range(rounds):
        seconds = {kind: load(kind) for kind in ((False, True) if n % 2 == 0 else (True, False))}
        named.append(seconds[False])
        numbered.append(seconds[True])
        ratios.append(seconds[True] / seconds[False])
    return statistics.median(named), statistics.median(numbered), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    results = []
    if args.only != "postgres":
        lines = import_events().read_bytes().splitlines()
        OUT.mkdir(exist_ok=True)

        def sqlite_load(numbered: bool) -> float:
            with tempfile.TemporaryDirectory(dir=OUT) as folder:
                return shaped_insert(lines, Path(folder), numbered=numbered)

        results.append(("sqlite", len(lines), rounds_of(sqlite_load, args.rounds)))
    if args.only != "sqlite":
        events = two_months()
        count = sum(1 for _ in events.open("rb"))
        load = lambda numbered: shaped_copy(events, numbered=numbered)  # noqa: E731
        results.append(("postgres", count, rounds_of(load, args.rounds)))
    for engine, count, (named, numbered, ratio) in results:
        report(
            f"{engine}: the shaped floor, {count:,} events, median of {args.rounds} rounds",
            [
                ("org as its name (as samtal stores it)", count / named, "events/s"),
                ("org as a number", count / numbered, "events/s"),
                ("time: number / name (median of rounds)", ratio, "x"),
            ],
        )


if __name__ == "__main__":
    main()

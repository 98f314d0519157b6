"""The HTML report of `samtal stats`: one self-contained file (inline SVG charts drawn by
matplotlib, inline CSS, no script, no external link) that opens offline."""

from __future__ import annotations

import html
import io
import math
import re
from datetime import date, datetime, time, timedelta
from typing import Any

from samtal.stats.figures import BUCKET_NAMES, WEEKDAYS
from samtal.times import zone

REACHED, MISSED, ACCENT, SOFT = "#2e7d5b", "#d1603d", "#2f5d8a", "#9fb8d0"


def report(stats: dict[str, Any], *, tz: str, span: tuple[datetime, datetime] | None = None) -> str:
    """The report of `stats` (as `figures` computes them) for a period in zone `tz`; `span`
    is the first and last start the copy holds (None: it holds nothing)."""
    period = stats["period"]
    title = f"Calls {period_title(period['from'], period['to'])} ({tz})"
    definitions = stats["definitions"]
    threshold = f"{definitions['sl']:g} s"
    calls = stats["calls"]
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=note>{html.escape(_held(span, tz))} Hours and days are local time in "
        f"{html.escape(tz)}.</p>",
    ]
    if calls["calls"] == 0:
        body.append(
            '<p class="empty"><b>No calls in this period.</b> Nothing to count or draw: '
            "choose a period within the days your copy holds, or run <code>samtal sync</code> "
            "to bring it up to date.</p>"
        )
        body += ["<h2>Definitions</h2>", _definitions(definitions)]
        return _PAGE.format(title=html.escape(title), body="\n".join(body))
    every = stats["allGroups"]
    tiles = [
        ("Calls", f"{calls['calls']:,}"),
        ("Reached a person", _share(calls["reachedPerson"], calls["calls"])),
        ("Missed", _share(calls["missed"], calls["calls"])),
        ("Average talk time", _duration(calls["averageTalkTime"])),
        (f"Service level ({threshold})", _percent(every["serviceLevel"])),
        ("Answer rate", _percent(every["answerRate"])),
        ("Average speed of answer", _duration(every["averageSpeedOfAnswer"])),
        ("Average time to abandon", _duration(every["averageTimeToAbandon"])),
    ]
    charts = [
        ("Calls per day", _per_day(stats)),
        ("Calls by hour and weekday", _heat_map(stats)),
        (f"Service level ({threshold}) and answer rate per response group", _groups(stats)),
        ("Wait before answer or abandon", _waits(stats)),
    ]
    if "intervals" in stats:
        each = _INTERVAL_NAMES[definitions["interval"]]
        charts.append((f"Calls and service level ({threshold}) per {each}", _intervals(stats)))
    body += [
        '<div class="tiles">',
        *(
            f'<div class="tile"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
            for k, v in tiles
        ),
        "</div>",
        '<div class="charts">',
        *(
            f"<figure><figcaption>{html.escape(n)}</figcaption>{_own_ids(svg, f'c{i}-')}</figure>"
            for i, (n, svg) in enumerate(charts, 1)
        ),
        "</div>",
        "<h2>Per response group</h2>",
        _group_table(stats, threshold),
        "<h2>Wait distribution</h2>",
        _wait_table(stats),
        "<h2>Definitions</h2>",
        _definitions(definitions),
    ]
    return _PAGE.format(title=html.escape(title), body="\n".join(body))


def period_title(start: str, end: str) -> str:
    """The days (or times) a period covers as they were asked for, never a raw timestamp:
    `2017-01-04 to 2017-01-05` for the two whole days up to 6 January, `2017-01-04` for
    one, `2017-01-04 08:00 to 12:00` for the minutes from 08:00 through 12:00 (the period ends
    at 12:01: `to` is inclusive)."""
    first = datetime.fromisoformat(start)
    after = datetime.fromisoformat(end)
    last = after - timedelta(microseconds=1)
    if first.time() == after.time() == time(0):
        if last.date() <= first.date():
            return first.date().isoformat()
        return f"{first.date().isoformat()} to {last.date().isoformat()}"
    clock = "%H:%M:%S" if first.second or after.second or after.microsecond else "%H:%M"
    # isoformat, not %Y: strftime writes the year 1 as "1".
    if first.date() == last.date():
        return f"{first.date().isoformat()} {first.strftime(clock)} to {last.strftime(clock)}"
    return (
        f"{first.date().isoformat()} {first.strftime(clock)} "
        f"to {last.date().isoformat()} {last.strftime(clock)}"
    )


def _held(span: tuple[datetime, datetime] | None, tz: str) -> str:
    """What the copy holds, in its first and last local day."""
    if span is None:
        return "Your copy holds no calls yet."
    first, last = (moment.astimezone(zone(tz)).date().isoformat() for moment in span)
    return f"Your copy holds calls from {first} to {last}."


_INTERVAL_NAMES = {
    "15min": "quarter hour",
    "30min": "half hour",
    "hour": "hour",
    "day": "day",
    "week": "week",
}


def _definitions(d: dict[str, Any]) -> str:
    """The choices in force (stats.md's `definitions`) and what the figures mean, in words."""
    days = (
        "every day"
        if d["days"] is None
        else ", ".join(WEEKDAYS[number - 1] for number in d["days"])
    )
    base = (
        "answered calls (abandoned calls do not count)"
        if d["slBase"] == "answered"
        else "offered calls (abandoned calls count against it)"
    )
    short = (
        "none: every call offered to a group counts"
        if not d["shortAbandon"]
        else f"calls nobody answered that lasted less than {d['shortAbandon']:g} s are left out "
        "of the group figures (counted apart as short abandons)"
    )
    items = [
        ("Service level", f"answered by a person within {d['sl']:g} s of the start, divided by "
                          f"{base}"),
        ("Short abandons", short),
        ("Days counted", days),
        ("Hours counted", "the whole day" if d["hours"] is None else f"{d['hours']} (local)"),
        ("Answered", "a person took the call (calleeAnswered is set); a queue holding the call "
                     "is not an answer"),
        ("Offered", "the call reached a response group (receivingNo, the first one)"),
        ("Speed of answer", "from the start of the call until a person answered"),
        ("Time to abandon", "from the start of the call until it ended unanswered"),
    ]  # fmt: skip
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    return f'<dl class="definitions">{rows}</dl>'


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    pyplot.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: crisp and small
            "font.family": "sans-serif",
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.edgecolor": "#888888",
            "axes.titleweight": "bold",
            # The ids inside a chart from its content, not at random: the same copy gives the
            # same report, byte for byte.
            "svg.hashsalt": "samtal",
        }
    )
    return pyplot.subplots(figsize=(width, height))


def _svg(figure: Any) -> str:
    from matplotlib import pyplot

    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    pyplot.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # no XML prologue or DOCTYPE inside HTML
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _own_ids(svg: str, prefix: str) -> str:
    """`svg` with every id, and every reference to one, under `prefix`: each chart numbers its
    parts from `figure_1` up, and the page holds several, whose ids must differ."""
    return re.sub(r'(\sid="|href="#|url\(#)', lambda m: m.group(1) + prefix, svg)


def _per_day(stats: dict[str, Any]) -> str:
    days = list(stats["byDay"])
    reached = [stats["byDay"][d]["reachedPerson"] for d in days]
    missed = [stats["byDay"][d]["missed"] for d in days]
    figure, axes = _figure(7.5, 3.4)
    positions = range(len(days))
    axes.bar(positions, reached, color=REACHED, label="reached a person")
    axes.bar(positions, missed, bottom=reached, color=MISSED, label="missed")
    axes.set_ylabel("calls")
    _legend(axes)
    labels = [f"{WEEKDAYS[date.fromisoformat(d).weekday()]}\n{d[5:]}" for d in days]
    _ticks(axes, labels)
    return _svg(figure)


def _ticks(axes: Any, labels: list[str], most: int = 12) -> None:
    """Label every bar, or every n-th when there are more than `most` (as many as fit level
    under the chart, two lines each, apart)."""
    every = -(-len(labels) // most)
    axes.set_xticks(range(0, len(labels), every), labels[::every])


def _heat_map(stats: dict[str, Any]) -> str:
    figure, axes = _figure(7.5, 3.4)
    # Cells as vector rectangles (an image would be embedded as a PNG), Monday on top.
    mesh = axes.pcolormesh(
        stats["byHourWeekday"], cmap="Blues", edgecolors="#ffffff", linewidth=0.5
    )
    axes.invert_yaxis()
    axes.set_yticks([d + 0.5 for d in range(7)], WEEKDAYS)
    axes.set_xticks([h + 0.5 for h in range(0, 24, 2)], [f"{h:02d}" for h in range(0, 24, 2)])
    axes.set_xlabel("hour")
    axes.tick_params(length=0)
    bar = figure.colorbar(mesh, ax=axes)
    bar.set_label("calls", labelpad=8)
    bar.solids.set_rasterized(False)
    bar.solids.set_edgecolor("face")  # no hairlines between the colour steps
    return _svg(figure)


def _groups(stats: dict[str, Any]) -> str:
    names = list(stats["groups"])
    figure, axes = _figure(7.5, 3.4)
    if not names:
        axes.text(0.5, 0.5, "no calls to a response group", ha="center", transform=axes.transAxes)
        axes.set_axis_off()
        return _svg(figure)
    positions = range(len(names))
    level = [100 * (stats["groups"][n]["serviceLevel"] or 0) for n in names]
    rate = [100 * (stats["groups"][n]["answerRate"] or 0) for n in names]
    axes.bar([p - 0.2 for p in positions], level, 0.4, color=ACCENT, label="service level")
    axes.bar([p + 0.2 for p in positions], rate, 0.4, color=SOFT, label="answer rate")
    axes.set_xticks(list(positions), names)
    axes.set_ylim(0, 105)
    axes.set_ylabel("%")
    _legend(axes)
    return _svg(figure)


def _waits(stats: dict[str, Any]) -> str:
    waits = stats["allGroups"]["waits"]
    positions = range(len(BUCKET_NAMES))
    figure, axes = _figure(7.5, 3.4)
    axes.bar([p - 0.2 for p in positions], waits["answered"], 0.4, color=REACHED, label="answered")
    axes.bar([p + 0.2 for p in positions], waits["abandoned"], 0.4, color=MISSED, label="abandoned")
    axes.set_xticks(list(positions), BUCKET_NAMES)
    axes.set_ylabel("calls")
    _legend(axes)
    return _svg(figure)


def _intervals(stats: dict[str, Any]) -> str:
    """Calls per interval (bars) and the service level of each (a line, its own axis)."""
    parts = stats["intervals"]
    starts = [datetime.fromisoformat(part["start"]) for part in parts]
    calls = [part["calls"]["calls"] for part in parts]
    level = [part["allGroups"]["serviceLevel"] for part in parts]
    figure, axes = _figure(7.5, 3.4)
    positions = range(len(parts))
    axes.bar(positions, calls, 0.8, color=SOFT, label="calls")
    axes.set_ylabel("calls")
    line = axes.twinx()
    line.spines["right"].set_visible(True)
    line.plot(
        positions,
        [math.nan if v is None else 100 * v for v in level],  # no line across empty hours
        color=ACCENT,
        marker="." if len(parts) <= 60 else None,
        linewidth=1.5,
        label="service level",
    )
    line.set_ylim(0, 105)
    line.set_ylabel("service level %")
    whole_days = all(s.time() == time(0) for s in starts)
    _ticks(
        axes,
        [
            f"{WEEKDAYS[s.weekday()]}\n{s:%m-%d}" if whole_days else f"{s:%m-%d}\n{s:%H:%M}"
            for s in starts
        ],
        most=10,  # the second axis takes room
    )
    handles = axes.get_legend_handles_labels()
    more = line.get_legend_handles_labels()
    axes.legend(handles[0] + more[0], handles[1] + more[1], frameon=False, loc="lower center",
                bbox_to_anchor=(0.5, 1.0), ncol=2)  # fmt: skip
    return _svg(figure)


def _legend(axes: Any) -> None:
    """The legend above the plot, in one row: never over a bar."""
    axes.legend(frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)


def _group_table(stats: dict[str, Any], threshold: str) -> str:
    head = (
        "<tr><th>Response group</th><th>Offered</th><th>Answered</th><th>Abandoned</th>"
        f"<th>Short abandons</th><th>Answer rate</th><th>Service level ({threshold})</th>"
        "<th>Average speed of answer</th><th>Average time to abandon</th></tr>"
    )
    rows = [_group_row(name, figures) for name, figures in stats["groups"].items()] + [
        _group_row("All groups", stats["allGroups"], total=True)
    ]
    return f'<div class="wide"><table>{head}{"".join(rows)}</table></div>'


def _group_row(name: str, g: dict[str, Any], *, total: bool = False) -> str:
    cells = [
        f"{g['offered']:,}",
        f"{g['answered']:,}",
        f"{g['abandoned']:,}",
        f"{g['shortAbandoned']:,}",
        _percent(g["answerRate"]),
        _percent(g["serviceLevel"]),
        _duration(g["averageSpeedOfAnswer"]),
        _duration(g["averageTimeToAbandon"]),
    ]
    kind = ' class="total"' if total else ""
    return (
        f"<tr{kind}><td>{html.escape(name)}</td>"
        + "".join(f"<td class=n>{html.escape(c)}</td>" for c in cells)
        + "</tr>"
    )


def _wait_table(stats: dict[str, Any]) -> str:
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(b)}</th>" for b in BUCKET_NAMES) + "</tr>"
    waits = stats["allGroups"]["waits"]
    rows = "".join(
        f"<tr><td>{label}</td>" + "".join(f"<td class=n>{n:,}</td>" for n in waits[key]) + "</tr>"
        for key, label in (("answered", "Answered"), ("abandoned", "Abandoned"))
    )
    return f'<div class="wide"><table>{head}{rows}</table></div>'


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}\u00a0%"


def _share(part: int, whole: int) -> str:
    return f"{part:,}" if not whole else f"{part:,} ({100 * part / whole:.0f}\u00a0%)"


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{value:.1f} s"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1d2630; background: #fafbfc; }}
h1 {{ font-size: 1.7rem; margin-bottom: .2rem; }}
h2 {{ font-size: 1.2rem; margin-top: 2rem; }}
.note {{ color: #5b6670; margin-top: 0; }}
.tiles {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(150px, 100%), 1fr));
         gap: .8rem; margin: 1.2rem 0; }}
.tile {{ background: #fff; border: 1px solid #e1e6eb; border-radius: 8px; padding: .8rem 1rem; }}
.tile b {{ display: block; font-size: 1.35rem; }}
.tile span {{ color: #5b6670; font-size: .9rem; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(520px, 100%), 1fr));
          gap: 1rem; }}
figure {{ margin: 0; background: #fff; border: 1px solid #e1e6eb; border-radius: 8px;
         padding: .6rem; }}
figcaption {{ font-weight: 600; margin: .2rem .4rem .4rem; }}
figure svg {{ width: 100%; height: auto; }}
table {{ border-collapse: collapse; background: #fff; width: 100%; }}
th, td {{ border-bottom: 1px solid #e1e6eb; padding: .4rem .6rem; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.total td {{ font-weight: 600; border-top: 2px solid #c5ced6; }}
.wide {{ overflow-x: auto; }}
.empty {{ background: #fff4e5; border: 1px solid #f0c27b; border-radius: 8px; padding: 1rem; }}
.definitions {{ display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }}
.definitions dt {{ font-weight: 600; }}
.definitions dd {{ margin: 0; }}
@media (max-width: 600px) {{
  body {{ margin: 1rem auto; }}
  h1 {{ font-size: 1.35rem; }}
  .definitions {{ grid-template-columns: 1fr; }}
  .definitions dd {{ margin-bottom: .4rem; }}
}}
</style>
</head>
<body>
{body}
</body>
</html>
"""

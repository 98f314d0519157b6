"""The HTML report of `samtal stats`: one self-contained file (inline SVG charts drawn by
matplotlib, inline CSS, no script, no external link) that opens offline."""

from __future__ import annotations

import html
import io
import re
from datetime import date
from typing import Any

from samtal.stats.figures import BUCKET_NAMES, WEEKDAYS

REACHED, MISSED, ACCENT, SOFT = "#2e7d5b", "#d1603d", "#2f5d8a", "#9fb8d0"


def report(stats: dict[str, Any], *, tz: str, threshold: float) -> str:
    """The report of `stats` (as `figures` computes them) for a period in zone `tz`."""
    period = stats["period"]
    title = f"Calls {_date(period['from'])} to {_date(period['to'])} ({tz})"
    calls = stats["calls"]
    every = stats["allGroups"]
    tiles = [
        ("Calls", f"{calls['calls']:,}"),
        ("Reached a person", _share(calls["reachedPerson"], calls["calls"])),
        ("Missed", _share(calls["missed"], calls["calls"])),
        ("Average talk time", _duration(calls["averageTalkTime"])),
        (f"Service level ({threshold:g} s)", _percent(every["serviceLevel"])),
        ("Answer rate", _percent(every["answerRate"])),
        ("Average speed of answer", _duration(every["averageSpeedOfAnswer"])),
        ("Average time to abandon", _duration(every["averageTimeToAbandon"])),
    ]
    charts = [
        ("Calls per day", _per_day(stats)),
        ("Calls by hour and weekday", _heat_map(stats)),
        (f"Service level ({threshold:g} s) and answer rate per response group", _groups(stats)),
        ("Wait before answer or abandon", _waits(stats)),
    ]
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=note>From {html.escape(period['from'])} up to (not including) "
        f"{html.escape(period['to'])}; hours and days are local time in {html.escape(tz)}.</p>",
        '<div class="tiles">',
        *(
            f'<div class="tile"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
            for k, v in tiles
        ),
        "</div>",
        '<div class="charts">',
        *(f"<figure><figcaption>{html.escape(n)}</figcaption>{svg}</figure>" for n, svg in charts),
        "</div>",
        "<h2>Per response group</h2>",
        _group_table(stats, threshold),
        "<h2>Wait distribution</h2>",
        _wait_table(stats),
    ]
    return _PAGE.format(title=html.escape(title), body="\n".join(body))


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


def _per_day(stats: dict[str, Any]) -> str:
    days = list(stats["byDay"])
    reached = [stats["byDay"][d]["reachedPerson"] for d in days]
    missed = [stats["byDay"][d]["missed"] for d in days]
    figure, axes = _figure(7.5, 3.4)
    labels = [f"{WEEKDAYS[date.fromisoformat(d).weekday()]} {d[5:]}" for d in days]
    axes.bar(labels, reached, color=REACHED, label="reached a person")
    axes.bar(labels, missed, bottom=reached, color=MISSED, label="missed")
    axes.set_ylabel("calls")
    _legend(axes)
    axes.tick_params(axis="x", labelrotation=45 if len(days) > 8 else 0)
    return _svg(figure)


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
    bar = figure.colorbar(mesh, ax=axes, label="calls")
    bar.solids.set_rasterized(False)
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


def _legend(axes: Any) -> None:
    """The legend above the plot, in one row: never over a bar."""
    axes.legend(frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)


def _group_table(stats: dict[str, Any], threshold: float) -> str:
    head = (
        "<tr><th>Response group</th><th>Offered</th><th>Answered</th><th>Abandoned</th>"
        f"<th>Answer rate</th><th>Service level ({threshold:g} s)</th>"
        "<th>Average speed of answer</th><th>Average time to abandon</th></tr>"
    )
    rows = [_group_row(name, figures) for name, figures in stats["groups"].items()] + [
        _group_row("All groups", stats["allGroups"], total=True)
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _group_row(name: str, g: dict[str, Any], *, total: bool = False) -> str:
    cells = [
        f"{g['offered']:,}",
        f"{g['answered']:,}",
        f"{g['abandoned']:,}",
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
    return f"<table>{head}{rows}</table>"


def _date(text: str) -> str:
    return text[:10]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _share(part: int, whole: int) -> str:
    return f"{part:,}" if not whole else f"{part:,} ({100 * part / whole:.0f} %)"


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
.tiles {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr));
         gap: .8rem; margin: 1.2rem 0; }}
.tile {{ background: #fff; border: 1px solid #e1e6eb; border-radius: 8px; padding: .8rem 1rem; }}
.tile b {{ display: block; font-size: 1.5rem; }}
.tile span {{ color: #5b6670; font-size: .9rem; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
          gap: 1rem; }}
figure {{ margin: 0; background: #fff; border: 1px solid #e1e6eb; border-radius: 8px;
         padding: .6rem; }}
figcaption {{ font-weight: 600; margin: .2rem .4rem .4rem; }}
figure svg {{ width: 100%; height: auto; }}
table {{ border-collapse: collapse; background: #fff; width: 100%; }}
th, td {{ border-bottom: 1px solid #e1e6eb; padding: .4rem .6rem; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.total td {{ font-weight: 600; border-top: 2px solid #c5ced6; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""

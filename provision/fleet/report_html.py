"""``report.html``: the fleet report as one self-contained page to look at.

Made with Jinja2 (ansible-core's own template engine, so no new dependency) from the
report's redacted JSON: a summary by status, a sortable host table, a latency chart (SVG,
drawn here) of every host's first / median / p95 against what verify expects for its board
and link, drift, and in check mode the changes per host. The page loads nothing: no CDN,
no fonts, no images; its Content-Security-Policy forbids any request. Sorting is a few lines
of inline script (a click on a header, or ``#sort=COLUMN`` / ``#sort=-COLUMN`` in the URL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2

#: A host's latency is "as expected" within this factor of what verify expects.
BAND = (0.75, 1.5)
BAR_HEIGHT = 14
LABEL_WIDTH = 170
PLOT_WIDTH = 560

#: Sortable columns: (key, heading).
COLUMNS = (
    ("host", "host"),
    ("status", "status"),
    ("board", "board"),
    ("os", "OS / arch"),
    ("runtime", "Edge TPU runtime"),
    ("python_runtime", "inference runtime"),
    ("smoke", "smoke test"),
    ("median", "median ms"),
    ("expected", "expected ms"),
    ("changed", "changed"),
)


@dataclass(frozen=True)
class Bar:
    """One host's row of the latency chart, in SVG units."""

    host: str
    y: int
    first: float | None
    median: float
    p95: float | None
    expected: float | None
    x_first: float | None
    x_median: float
    x_p95: float | None
    band: tuple[float, float] | None
    verdict: str  # "in band" | "slow" | "fast" | "no reference"


def _verdict(median: float, expected: float | None) -> str:
    if expected is None:
        return "no reference"
    if median > expected * BAND[1]:
        return "slow"
    if median < expected * BAND[0]:
        return "fast"
    return "in band"


def chart(hosts: Sequence[Mapping[str, Any]]) -> tuple[list[Bar], float, list[float]]:
    """The chart's bars, its scale's top (ms) and its tick values."""
    timed = [h for h in hosts if h.get("latency_ms") is not None]
    top = 1.0
    for h in timed:
        for key in ("latency_first_ms", "latency_ms", "latency_p95_ms"):
            top = max(top, float(h.get(key) or 0.0))
        if h.get("expected_ms") is not None:
            top = max(top, float(h["expected_ms"]) * BAND[1])
    top *= 1.05

    def x(ms: float | None) -> float | None:
        return None if ms is None else round(LABEL_WIDTH + PLOT_WIDTH * ms / top, 1)

    bars = []
    for index, h in enumerate(timed):
        median = float(h["latency_ms"])
        expected = h.get("expected_ms")
        band = None
        if expected is not None:
            low, high = x(float(expected) * BAND[0]), x(float(expected) * BAND[1])
            band = (low or 0.0, high or 0.0)
        bars.append(
            Bar(
                host=str(h["host"]),
                y=index * (BAR_HEIGHT + 6) + 4,
                first=h.get("latency_first_ms"),
                median=median,
                p95=h.get("latency_p95_ms"),
                expected=expected,
                x_first=x(h.get("latency_first_ms")),
                x_median=x(median) or 0.0,
                x_p95=x(h.get("latency_p95_ms")),
                band=band,
                verdict=_verdict(median, expected),
            )
        )
    step = _tick_step(top)
    ticks = [round(step * i, 6) for i in range(int(top // step) + 1)]
    return bars, top, ticks


def _tick_step(top: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if top / step <= 8:
            return float(step)
    return 10000.0


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (resources.files("provision.fleet") / "templates" / name).read_text()
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ms"] = lambda v: "" if v is None else f"{float(v):.1f}"
    return env


def render_html(report: Mapping[str, Any]) -> str:
    """The page for a report (the dict of ``FleetReport.to_json()``: already redacted)."""
    hosts = list(report.get("hosts", []))
    bars, top, ticks = chart(hosts)
    counts = Counter(str(h.get("status", "")) for h in hosts)
    verdicts = Counter(b.verdict for b in bars)
    height = len(bars) * (BAR_HEIGHT + 6) + 30
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            hosts=hosts,
            counts=sorted(counts.items()),
            verdicts=sorted(verdicts.items()),
            columns=COLUMNS,
            bars=bars,
            top=top,
            ticks=ticks,
            scale=PLOT_WIDTH / top,
            label_width=LABEL_WIDTH,
            plot_width=PLOT_WIDTH,
            bar_height=BAR_HEIGHT,
            chart_height=height,
            band=BAND,
        )
    )

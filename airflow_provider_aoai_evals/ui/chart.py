"""Geometry of the Evals page's chart, computed on the server and drawn as inline SVG by the template.

Server-rendered SVG needs no script in the page and no charting library to ship, pin and audit: the
iframe the Airflow UI opens shows it at once, it works air-gapped, and every number is in the DOM as an
attribute a test (or a person with the inspector) can read. Only numbers are computed here; names reach
the SVG through the template, which escapes them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from airflow_provider_aoai_evals.ui.evals_data import RunRow

WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 12, 36
#: Criterion lines get a colour class ``series-0`` .. ``series-5`` in the CSS, cycling.
SERIES_COLOURS = 6


@dataclass(frozen=True)
class Point:
    run_id: str
    x: float
    y: float
    rate: float | None
    low: float | None = None
    high: float | None = None


@dataclass
class Series:
    name: str
    css_class: str
    points: list[Point] = field(default_factory=list)

    @property
    def path(self) -> str:
        """An SVG path through the points that have a rate; a gap where a run has none."""
        parts: list[str] = []
        pen_down = False
        for p in self.points:
            if p.rate is None:
                pen_down = False
                continue
            parts.append(f"{'L' if pen_down else 'M'}{p.x:.1f},{p.y:.1f}")
            pen_down = True
        return " ".join(parts)


@dataclass(frozen=True)
class Mark:
    run_id: str
    x: float
    y: float
    outcome: str


@dataclass
class Chart:
    width: int
    height: int
    overall: Series
    errored: Series
    criteria: list[Series]
    band: str
    marks: list[Mark]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM


def _y(rate: float) -> float:
    return TOP + (1.0 - rate) * (HEIGHT - TOP - BOTTOM)


def _date(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def build(runs: tuple[RunRow, ...], gate_outcomes: dict[str, str]) -> Chart:
    """One point per run (x = created_at), oldest first. ``gate_outcomes``: run id -> failed/inconclusive."""
    times = [r.summary.created_at or 0 for r in runs]
    lo, hi = (min(times), max(times)) if times else (0, 0)
    span = WIDTH - LEFT - RIGHT

    def x_of(i: int) -> float:
        if hi > lo:
            return LEFT + (times[i] - lo) / (hi - lo) * span
        # all runs created in the same second: spread them evenly in order
        return LEFT + (span / 2 if len(runs) == 1 else i / (len(runs) - 1) * span)

    overall = Series("pass rate", "overall")
    errored = Series("errored rate", "errored")
    criteria: dict[str, Series] = {}
    marks: list[Mark] = []
    upper: list[str] = []
    lower: list[str] = []
    for i, row in enumerate(runs):
        x = x_of(i)
        est = row.rates.overall
        overall.points.append(Point(row.summary.run_id, x, _y(est.rate or 0.0), est.rate, est.low, est.high))
        if est.low is not None and est.high is not None:
            upper.append(f"{x:.1f},{_y(est.high):.1f}")
            lower.append(f"{x:.1f},{_y(est.low):.1f}")
        err = row.summary.errored_rate
        errored.points.append(Point(row.summary.run_id, x, _y(err or 0.0), err))
        for c in row.rates.criteria:
            series = criteria.get(c.name)
            if series is None:
                series = criteria[c.name] = Series(c.name, f"series-{len(criteria) % SERIES_COLOURS}")
            series.points.append(
                Point(
                    row.summary.run_id,
                    x,
                    _y(c.estimate.rate or 0.0),
                    c.estimate.rate,
                    c.estimate.low,
                    c.estimate.high,
                )
            )
        outcome = gate_outcomes.get(row.summary.run_id)
        if outcome:
            marks.append(Mark(row.summary.run_id, x, _y(est.rate or 0.0), outcome))
    band = " ".join([*upper, *reversed(lower)]) if len(upper) > 1 else ""
    y_ticks = [(_y(v), f"{v:.0%}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    x_ticks: list[tuple[float, str]] = []
    if runs:
        x_ticks.append((x_of(0), _date(times[0])))
        if len(runs) > 1 and hi > lo:
            x_ticks.append((x_of(len(runs) - 1), _date(times[-1])))
    return Chart(WIDTH, HEIGHT, overall, errored, list(criteria.values()), band, marks, y_ticks, x_ticks)

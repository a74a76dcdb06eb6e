"""A small server-side SVG chart: onset day of year per year.

Rendered as inline SVG so the datasets page needs no JavaScript and loads
nothing from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow loads only when a chart is drawn: a quick server start
    from exports.onset import Onset

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    low: float  # y of the earliest site
    high: float  # y of the latest site
    onset: Onset


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: list[Point]
    x_ticks: list[tuple[float, int]]
    y_ticks: list[tuple[float, int]]
    line: str  # SVG points attribute

    @property
    def plot_bottom(self) -> int:
        return self.height - BOTTOM


def onset_chart(onsets: list[Onset]) -> Chart | None:
    if not onsets:
        return None
    years = [o.year for o in onsets]
    lo = min(o.earliest for o in onsets)
    hi = max(o.latest for o in onsets)
    lo, hi = max(1, lo - 5), min(366, hi + 5)
    if hi <= lo:
        hi = lo + 1
    y0, y1 = min(years), max(years)
    span = max(1, y1 - y0)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(year: int) -> float:
        return LEFT + (plot_w / 2 if y0 == y1 else (year - y0) / span * plot_w)

    def y(doy: float) -> float:
        # Earlier days higher up: an earlier spring is a higher point.
        return TOP + (doy - lo) / (hi - lo) * plot_h

    points = [Point(round(x(o.year), 1), round(y(o.median), 1), round(y(o.earliest), 1),
                    round(y(o.latest), 1), o) for o in onsets]
    step = max(1, (hi - lo) // 5)
    return Chart(
        width=WIDTH, height=HEIGHT, points=points,
        x_ticks=[(round(x(yr), 1), yr) for yr in range(y0, y1 + 1)],
        y_ticks=[(round(y(d), 1), d) for d in range(lo, hi + 1, step)],
        line=" ".join(f"{p.x},{p.y}" for p in points),
    )

"""Small SVG charts for the report, drawn in Python so the page needs no plotting library or CDN.

Each chart is an inline `<svg class="chart">` with axes, ticks and a `<title>` per mark (the
browser shows it on hover). Every label is escaped: names come from the database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 520, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 42


@dataclass(frozen=True)
class Axes:
    """Maps data to pixels inside the plot area."""

    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, value: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return LEFT + (value - self.x0) / span * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return HEIGHT - BOTTOM - (value - self.y0) / span * (HEIGHT - TOP - BOTTOM)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:.3g}"


def _frame(axes: Axes, x_label: str, y_label: str, css_class: str) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
        f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/>',
    ]
    for tick in _ticks(axes.x0, axes.x1):
        x = axes.x(tick)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{_number(tick)}</text>'
        )
    for tick in _ticks(axes.y0, axes.y1):
        y = axes.y(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
    parts.append(
        f'<text class="label" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text class="label" transform="translate(14 {(TOP + HEIGHT - BOTTOM) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return parts


def _dot(css_class: str, x: float, y: float, radius: float, title: str) -> str:
    """One mark with its hover text (escaped: titles name graphs and models)."""
    return (
        f'<circle class="{css_class}" cx="{x:.1f}" cy="{y:.1f}" r="{radius:g}"><title>{escape(title)}</title></circle>'
    )


def _padded(values: Sequence[float], *, floor: float | None = None) -> tuple[float, float]:
    low, high = min(values, default=0.0), max(values, default=1.0)
    if floor is not None:
        low = min(low, floor)
    pad = (high - low) * 0.06 or 0.5
    return low - pad, high + pad


def search_curve(rewards: Sequence[float], y_label: str = "objective") -> str:
    """Each evaluation's objective (dots) and the best so far (a step line), by evaluation number."""
    best, running = [], -math.inf
    for value in rewards:
        running = max(running, value)
        best.append(running)
    axes = Axes(0.5, len(rewards) + 0.5, *_padded(rewards))
    parts = _frame(axes, "evaluation", y_label, "search-curve")
    if best:
        path = [f"M{axes.x(1):.1f} {axes.y(best[0]):.1f}"]
        for index in range(1, len(best)):
            path.append(f"H{axes.x(index + 1):.1f}V{axes.y(best[index]):.1f}")
        parts.append(f'<path class="best-line" d="{"".join(path)}"/>')
    parts.extend(
        _dot("dot", axes.x(index), axes.y(value), 3, f"evaluation {index}: {_number(value)}")
        for index, value in enumerate(rewards, start=1)
    )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    on_front: bool = False


def pareto_chart(points: Sequence[Point], x_label: str, y_label: str) -> str:
    """Every evaluated point (grey) and the non-dominated ones (highlighted, joined in x order)."""
    axes = Axes(*_padded([p.x for p in points], floor=0.0), *_padded([p.y for p in points]))
    parts = _frame(axes, x_label, y_label, "pareto")
    front = sorted((p for p in points if p.on_front), key=lambda p: p.x)
    if front:
        line = " ".join(f"{axes.x(p.x):.1f},{axes.y(p.y):.1f}" for p in front)
        parts.append(f'<polyline class="front-line" points="{line}"/>')
    for p in sorted(points, key=lambda p: p.on_front):  # front points drawn last, on top
        parts.append(
            _dot("front-dot" if p.on_front else "dot", axes.x(p.x), axes.y(p.y), 5 if p.on_front else 3, p.label)
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], x_label: str, bins: int = 20) -> str:
    """Counts of values in equal-width bins (the latency distribution of an eval)."""
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:  # one item, or all alike: a narrow span around it (a 1-unit bin drew 20 s for one 0.4 s item)
        spread = max(abs(low) * 0.2, 1e-3)
        low, high = low - spread / 2, high + spread / 2
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / width))] += 1
    axes = Axes(low, low + width * bins, 0.0, max(counts, default=1) * 1.08 or 1.0)
    parts = _frame(axes, x_label, "items", "histogram")
    for index, count in enumerate(counts):
        x0, x1 = axes.x(low + index * width), axes.x(low + (index + 1) * width)
        top = axes.y(count)
        parts.append(
            f'<rect class="bar" x="{x0 + 0.5:.1f}" y="{top:.1f}" width="{max(0.5, x1 - x0 - 1):.1f}" '
            f'height="{axes.y(0) - top:.1f}"><title>{_number(low + index * width)}–'
            f"{_number(low + (index + 1) * width)}: {count}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Interval:
    name: str
    value: float
    low: float
    high: float


def interval_chart(rows: Sequence[Interval], x_label: str) -> str:
    """One row per arm: its value as a dot and its 95% interval as a bar (a forest plot)."""
    row_height, left = 28, 210
    height = TOP + BOTTOM + row_height * len(rows)
    scale = (WIDTH - left - RIGHT) / 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart intervals" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * scale
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{height - BOTTOM}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{height - BOTTOM + 14}" text-anchor="middle">{tick:.0%}</text>'
        )
    for index, row in enumerate(rows):
        y = TOP + row_height * index + row_height / 2
        label = escape(clip(row.name, 34))
        parts.append(f'<text class="name" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        parts.append(
            f'<line class="ci" x1="{left + row.low * scale:.1f}" y1="{y:.1f}" x2="{left + row.high * scale:.1f}" '
            f'y2="{y:.1f}"/>'
        )
        title = f"{row.name}: {row.value:.1%} [{row.low:.1%}, {row.high:.1%}]"
        parts.append(_dot("front-dot", left + row.value * scale, y, 5, title))
    parts.append(
        f'<text class="label" x="{left + scale / 2:.0f}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def clip(text: str, width: int) -> str:
    """A label of at most `width` characters that says when it was cut ("(Pareto fr" read as the name)."""
    return text if len(text) <= width else text[: width - 1] + "…"

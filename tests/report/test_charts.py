"""The report's charts as SVG text: what a reader sees on the axes."""

from __future__ import annotations

import re

from agentscale.report.charts import Interval, histogram, interval_chart, search_curve


def _bars(svg: str) -> list[tuple[float, float, int]]:
    """(low, high, count) of each bar, read from its tooltip."""
    return [(float(a), float(b), int(c)) for a, b, c in re.findall(r"<title>([\d.]+)–([\d.]+): (\d+)</title>", svg)]


def test_a_histogram_of_one_value_spans_that_value_not_twenty_seconds() -> None:
    """One 0.37 s item drew twenty 1-second bins, 0.37-20.4 s."""
    bars = _bars(histogram([0.37], "latency (s)"))
    assert len(bars) == 20 and sum(count for _, _, count in bars) == 1
    assert bars[0][0] >= 0.3 and bars[-1][1] <= 0.45
    (full,) = [(low, high) for low, high, count in bars if count]
    assert full[0] <= 0.37 <= full[1]


def test_a_histogram_spans_its_values() -> None:
    bars = _bars(histogram([1.0, 2.0, 3.0], "latency (s)"))
    assert bars[0][0] == 1.0 and bars[-1][1] == 3.0 and sum(count for _, _, count in bars) == 3


def test_the_search_curves_best_line_never_falls() -> None:
    """The step line is the best objective so far: after 0.2, 0.5, 0.3 it stays at 0.5 (drawn as each
    evaluation's own value, it fell with the 0.3 and read as the search getting worse)."""
    svg = search_curve([0.2, 0.5, 0.3])
    path = re.search(r'class="best-line" d="([^"]+)"', svg)
    assert path is not None
    heights = [float(y) for y in re.findall(r"[MV](?:[\d.]+ )?([\d.]+)", path.group(1))]
    assert len(heights) == 3 and heights[0] > heights[1] == heights[2]  # SVG's y grows downward


def test_an_interval_charts_long_label_says_it_was_cut() -> None:
    """The label "majority vote of 3 x l1 (Pareto front)" was drawn as "majority vote of 3 x l1 (Pareto fr"
    (the reports audit); the whole name stays in the dot's title."""
    from agentscale.report.charts import Interval, interval_chart

    long, fits = "majority vote of 3 x l1 (Pareto front)", "single call of l1"
    svg = interval_chart([Interval(long, 0.5, 0.4, 0.6), Interval(fits, 0.4, 0.3, 0.5)], "accuracy")
    assert ">majority vote of 3 x l1 (Pareto f…</text>" in svg and f">{fits}</text>" in svg
    assert f"<title>{long}: 50.0%" in svg


def test_the_search_curves_dots_are_numbered_from_one_on_the_axis() -> None:
    """Each dot's hover text names its evaluation as the axis counts them (1, 2, ...), and the first
    dot sits inside the plot, at the axis' tick 1 (numbered from 0, the first evaluation was drawn
    left of the axis and every tooltip was one off)."""
    svg = search_curve([0.2, 0.5, 0.3])
    titles = re.findall(r'<circle class="dot"[^>]*><title>([^<]*)</title>', svg)
    assert titles == ["evaluation 1: 0.2", "evaluation 2: 0.5", "evaluation 3: 0.3"]
    xs = [float(x) for x in re.findall(r'<circle class="dot" cx="([\d.]+)"', svg)]
    axis = float(re.search(r'<line class="axis" x1="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert axis < xs[0] < xs[1] < xs[2]
    ticks = {
        t.group(2): float(t.group(1))
        for t in re.finditer(r'<text class="tick" x="([\d.]+)" y="2\d\d"[^>]*>([^<]*)</text>', svg)
    }
    assert abs(ticks["1"] - xs[0]) < 0.2 and abs(ticks["3"] - xs[2]) < 0.2


def test_an_interval_charts_bar_spans_the_interval_around_its_dot() -> None:
    """The bar of a forest plot is the 95% interval: from its low to its high end, the dot between."""
    svg = interval_chart([Interval("a", 0.5, 0.25, 0.75), Interval("b", 0.9, 0.8, 1.0)], "accuracy")
    bars = [tuple(map(float, m)) for m in re.findall(r'<line class="ci" x1="([\d.]+)" y1="[\d.]+" x2="([\d.]+)"', svg)]
    dots = [float(x) for x in re.findall(r'<circle class="front-dot" cx="([\d.]+)"', svg)]
    grid = [float(x) for x in re.findall(r'<line class="grid" x1="([\d.]+)"', svg)]  # ticks 0, 25, 50, 75, 100%
    assert bars[0] == (grid[1], grid[3]) and dots[0] == grid[2]
    assert bars[1][0] < dots[1] < bars[1][1] == grid[4]

"""Runs people can look at: graph drawings (SVG/PNG) and one offline HTML page per run.

`write_report(store, run_id, path)` writes the page of an eval, a plain run or an optimization;
`render_svg(picture_from_spec(spec))` draws a graph file, `picture_from_candidate` an optimizer's
candidate. Nothing here calls a model: a report only reads what the database holds.
"""

from __future__ import annotations

from agentscale.report.drawing import GraphPicture, picture_from_candidate, picture_from_spec
from agentscale.report.svg import render_svg, write_drawing
from agentscale.report.write import default_report_path, render_report, write_report

__all__ = [
    "GraphPicture",
    "default_report_path",
    "picture_from_candidate",
    "picture_from_spec",
    "render_report",
    "render_svg",
    "write_drawing",
    "write_report",
]

"""Graph drawings as SVG (and PNG through cairosvg): the picture `agentscale draw` writes.

Every text in a drawing is data from a YAML file or a database (node ids, role and alias names), so
it is XML-escaped; the SVG is inlined as is in the HTML report. Elements carry `data-*` attributes
(node id, role, model; edge ends) so a test or a script can read the drawing back.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from agentscale.errors import AgentScaleError
from agentscale.graphs.io import refuse_unusable_output, write_output
from agentscale.report.charts import clip
from agentscale.report.drawing import GraphPicture, PictureNode
from agentscale.report.layout import COLUMN_GAP, COORDINATOR_SUFFIX, Box, layout

PNG_SCALE = 2.0  # a PNG is drawn at twice the SVG's size, for sharp text on high-density screens
PNG_MAX_SIDE = 32_000  # cairo refuses an image over 32,767 px a side (CAIRO_STATUS_INVALID_SIZE)
PNG_LEAST_SCALE = 0.5  # below half the SVG's size its labels cannot be read
ROLE_FILL = {
    "assistant": "#e8f0fe",
    "critic": "#fde7e7",
    "fuser": "#e6f4ea",
    "verifier": "#fff3e0",
    "vote": "#f1e8fd",
    "tester": "#e0f7fa",
}
CUSTOM_FILL = "#eeeeee"
ARROW = 9.8  # an edge's head, px long (twice as wide); every edge enters its target horizontally
STYLE = (
    "text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;fill:#202124}"
    ".id{font-size:10px;fill:#5f6368}.role{font-size:13px;font-weight:bold}.model{font-size:11px}"
    ".edge{fill:none;stroke:#5f6368;stroke-width:1.4}.head{fill:#5f6368}.box{stroke:#5f6368;stroke-width:1.2}"
    ".output .box{stroke:#1a73e8;stroke-width:3}.badge{font-size:9px;fill:#1a73e8;font-weight:bold}"
    ".coordinator rect{fill:#fffbe6;stroke:#b08800;stroke-dasharray:5 3}.coordinator text{font-size:12px}"
)


def render_svg(picture: GraphPicture, *, title: str | None = None) -> str:
    """A standalone SVG document (also valid inline in HTML5)."""
    placed = layout(picture)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph-drawing" width="{placed.width:.0f}" '
        f'height="{placed.height:.0f}" viewBox="0 0 {placed.width:.0f} {placed.height:.0f}" '
        f'data-graph="{escape(picture.name)}">',
        f"<title>{escape(title or picture.name)}</title>",
        f"<style>{STYLE}</style>",
    ]
    if placed.coordinator is not None and picture.coordinator:
        parts.append(_coordinator(placed.coordinator, picture.coordinator))
    for source, target in picture.edges:
        lane = placed.lanes.get((source, target))
        parts.append(_edge(source, target, placed.boxes[source], placed.boxes[target], lane))
    for node in picture.nodes:
        parts.append(_node(node, placed.boxes[node.id], is_output=node.id == picture.output))
    parts.append("</svg>")
    return "".join(parts)


def _edge(source: str, target: str, start: Box, end: Box, lane: float | None = None) -> str:
    """A curve from box to box; one that skips a column (`lane`) goes down in the gap after its
    source's column, along its lane below the nodes, and up in the gap before its target's."""
    (x1, y1), (x2, y2) = start.right, end.left
    if lane is None:
        bend = max(24.0, (x2 - x1) / 2)
        route = f"C{x1 + bend:.1f} {y1:.1f} {x2 - bend:.1f} {y2:.1f} {x2:.1f} {y2:.1f}"
    else:
        half = COLUMN_GAP / 2
        route = (
            f"C{x1 + half:.1f} {y1:.1f} {x1 + half:.1f} {lane:.1f} {x1 + COLUMN_GAP:.1f} {lane:.1f}"
            f"L{x2 - COLUMN_GAP:.1f} {lane:.1f}"
            f"C{x2 - half:.1f} {lane:.1f} {x2 - half:.1f} {y2:.1f} {x2:.1f} {y2:.1f}"
        )
    # the head is drawn, not an SVG marker: a report inlines many drawings, and a marker's id is
    # page-wide, so every edge used the first drawing's marker, which a closed <details> hides (no heads)
    head = f"M{x2 - ARROW:.1f} {y2 - ARROW / 2:.1f}L{x2:.1f} {y2:.1f}L{x2 - ARROW:.1f} {y2 + ARROW / 2:.1f}z"
    return (
        f'<path class="edge" data-from="{escape(source)}" data-to="{escape(target)}" d="M{x1:.1f} {y1:.1f}{route}"/>'
        f'<path class="head" d="{head}"/>'
    )


def _node(node: PictureNode, box: Box, *, is_output: bool) -> str:
    fill = ROLE_FILL.get(node.role, CUSTOM_FILL)
    model = node.model or "no model"
    tooltip = f"{node.id}: {node.role}" + (f" on {node.route}" if node.route else "")
    cx = box.x + box.width / 2
    classes = "node output" if is_output else "node"
    badge = (
        f'<text class="badge" x="{box.x + box.width - 6:.1f}" y="{box.y + 12:.1f}" text-anchor="end">OUTPUT</text>'
        if is_output
        else ""
    )
    return (
        f'<g class="{classes}" data-node="{escape(node.id)}" data-role="{escape(node.role)}" '
        f'data-model="{escape(node.model or "")}"><title>{escape(tooltip)}</title>'
        f'<rect class="box" x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.0f}" height="{box.height:.0f}" '
        f'rx="8" fill="{fill}"/>{badge}'
        f'<text class="id" x="{box.x + 8:.1f}" y="{box.y + 12:.1f}">{escape(clip(node.id, 20))}</text>'
        f'<text class="role" x="{cx:.1f}" y="{box.y + 32:.1f}" text-anchor="middle">'
        f"{escape(clip(node.role, 20))}</text>"
        f'<text class="model" x="{cx:.1f}" y="{box.y + 48:.1f}" text-anchor="middle">{escape(clip(model, 26))}</text>'
        "</g>"
    )


def _coordinator(box: Box, label: str) -> str:
    return (
        f'<g class="coordinator"><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.0f}" '
        f'height="{box.height:.0f}" rx="6"/><text x="{box.x + 10:.1f}" y="{box.y + box.height / 2 + 4:.1f}">'
        f"{escape(label + COORDINATOR_SUFFIX)}</text></g>"
    )


def write_drawing(picture: GraphPicture, path: Path) -> Path:
    """Write the drawing as SVG, or as PNG when the path ends in `.png` (needs `agentscale[png]`): at
    twice the SVG's size, less for a drawing that would pass cairo's largest image (a 71-node chain
    at twice its size crashed it), and refused when that would make it illegible."""
    suffix = path.suffix.lower()
    refuse_unusable_output(path, "graph.svg")
    if suffix not in (".svg", ".png"):
        raise AgentScaleError(f"{path}: a drawing is written as .svg or .png, not {suffix or 'a file without suffix'}")
    svg = render_svg(picture)
    if suffix == ".svg":
        write_output(path, svg)
        return path
    try:
        import cairosvg
    except (ImportError, OSError) as exc:  # OSError: the cairo library itself is missing
        raise AgentScaleError(
            f"PNG drawings need cairosvg and the cairo library ({exc}): pip install 'agentscale[png]', or write .svg"
        ) from None
    placed = layout(picture)
    scale = min(PNG_SCALE, PNG_MAX_SIDE / max(placed.width, placed.height))
    if scale < PNG_LEAST_SCALE:
        raise AgentScaleError(
            f"{path}: the drawing is {placed.width:.0f} x {placed.height:.0f} px, too large for a legible PNG "
            f"(at most {PNG_MAX_SIDE} px a side): write .svg"
        )
    write_output(path, cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale))
    return path

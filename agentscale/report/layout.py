"""Where each node of a drawing goes: DAG levels as columns, left to right.

Graphs here are small (a handful to a few dozen nodes), so a layered layout is enough: a node's
column is its depth (sources first, the output last among its level's peers), and within a column
nodes are ordered by the mean row of their predecessors (one barycenter sweep), which removes most
edge crossings of fan-in and chain shapes. Pure geometry: rendering is :mod:`agentscale.report.svg`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentscale.report.drawing import GraphPicture

NODE_WIDTH = 168
NODE_HEIGHT = 58
COLUMN_GAP = 64
ROW_GAP = 22
MARGIN = 16
COORDINATOR_HEIGHT = 36  # the CEO band above the nodes, when the graph has a coordinator
COORDINATOR_SUFFIX = " (steers every round)"  # after the band's label
LABEL_CHAR_WIDTH = 7.4  # at most, per character of the band's 12 px label (DejaVu Sans)
LANE_GAP = 12  # between the lanes, below the nodes, of edges that skip a column


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float = NODE_WIDTH
    height: float = NODE_HEIGHT

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.width, self.y + self.height / 2

    @property
    def left(self) -> tuple[float, float]:
        return self.x, self.y + self.height / 2


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, Box]
    width: float
    height: float
    coordinator: Box | None
    lanes: dict[tuple[str, str], float]  # the height of each column-skipping edge's lane


def columns_of(picture: GraphPicture) -> list[list[str]]:
    """Node ids per level, each column ordered to keep edges short and uncrossed."""
    topology = picture.topology
    levels = topology.levels()
    columns: list[list[str]] = [[] for _ in range(max(levels.values(), default=0))]
    for node_id in topology.order:
        columns[levels[node_id] - 1].append(node_id)
    row: dict[str, float] = {}
    for column in columns:
        for index, node_id in enumerate(column):
            row[node_id] = index
        if column is not columns[0]:
            column.sort(key=lambda n: _barycenter(n, topology.predecessors[n], row))
            for index, node_id in enumerate(column):
                row[node_id] = index
    return columns


def _barycenter(node_id: str, predecessors: tuple[str, ...], row: dict[str, float]) -> float:
    if not predecessors:
        return row[node_id]
    return sum(row[p] for p in predecessors) / len(predecessors)


def layout(picture: GraphPicture) -> Layout:
    """Boxes for every node, columns centred vertically on the tallest one."""
    columns = columns_of(picture)
    tallest = max((len(c) for c in columns), default=1)
    top = MARGIN + (COORDINATOR_HEIGHT + ROW_GAP if picture.coordinator else 0)
    body_height = tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP
    boxes: dict[str, Box] = {}
    for index, column in enumerate(columns):
        x = MARGIN + index * (NODE_WIDTH + COLUMN_GAP)
        column_height = len(column) * NODE_HEIGHT + (len(column) - 1) * ROW_GAP
        y0 = top + (body_height - column_height) / 2
        for row, node_id in enumerate(column):
            boxes[node_id] = Box(x, y0 + row * (NODE_HEIGHT + ROW_GAP))
    width: float = 2 * MARGIN + len(columns) * NODE_WIDTH + max(0, len(columns) - 1) * COLUMN_GAP
    coordinator = None
    if picture.coordinator:
        label = len(picture.coordinator + COORDINATOR_SUFFIX) * LABEL_CHAR_WIDTH + 20
        width = max(width, label + 2 * MARGIN)  # a one-column graph cut its CEO's label off
        coordinator = Box(MARGIN, MARGIN, width - 2 * MARGIN, COORDINATOR_HEIGHT)
    lanes = _lanes(picture, columns, top + body_height + ROW_GAP)
    return Layout(boxes, width, top + body_height + LANE_GAP * len(lanes) + MARGIN, coordinator, lanes)


def _lanes(picture: GraphPicture, columns: list[list[str]], first: float) -> dict[tuple[str, str], float]:
    """A lane below the nodes for each edge that skips a column: drawn straight, it ran behind the
    nodes between and seemed to come out of them (debate-3's s1 -> out read as c1 -> out)."""
    column = {node_id: index for index, ids in enumerate(columns) for node_id in ids}
    skipping = [(s, t) for s, t in picture.edges if column[t] - column[s] > 1]
    return {edge: first + index * LANE_GAP for index, edge in enumerate(skipping)}

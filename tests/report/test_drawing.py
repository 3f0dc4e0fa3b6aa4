"""Graph drawings: the expected nodes, edges, output and coordinator; escaping; SVG, PNG and the CLI."""

from __future__ import annotations

import itertools
import json
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agentscale.cli.app import main
from agentscale.errors import AgentScaleError
from agentscale.graphs.validate import load_spec_text
from agentscale.optimize.candidate import CandidateGraph, CeoChoice, NodeChoice
from agentscale.report import picture_from_candidate, picture_from_spec, render_svg, write_drawing

SVG = "{http://www.w3.org/2000/svg}"
DIAMOND = """\
name: diamond
models:
  small: {model: openai/gpt-4o-mini}
  big: {model: openai/gpt-4o}
nodes:
  - {id: plan, role: assistant, model: small}
  - {id: left, role: assistant, model: small}
  - {id: right, role: critic, model: big}
  - {id: pick, role: vote}
edges:
  - plan -> left, right
  - left, right -> pick
coordinator: {model: big, max_rounds: 2}
"""


def parse(svg: str) -> tuple[dict[str, dict[str, str]], set[tuple[str, str]], ET.Element]:
    root = ET.fromstring(svg)
    nodes = {g.get("data-node", ""): dict(g.attrib) for g in root.iter(f"{SVG}g") if "node" in g.get("class", "")}
    edges = {
        (p.get("data-from", ""), p.get("data-to", "")) for p in root.iter(f"{SVG}path") if p.get("class") == "edge"
    }
    return nodes, edges, root


def box_x(root: ET.Element, node_id: str) -> float:
    group = next(g for g in root.iter(f"{SVG}g") if g.get("data-node") == node_id)
    rect = group.find(f"{SVG}rect")
    assert rect is not None
    return float(rect.get("x", "nan"))


def test_a_known_graph_is_drawn_with_its_nodes_edges_output_and_coordinator() -> None:
    svg = render_svg(picture_from_spec(load_spec_text(DIAMOND, "diamond.yaml")))
    nodes, edges, root = parse(svg)
    assert {n: (a["data-role"], a["data-model"]) for n, a in nodes.items()} == {
        "plan": ("assistant", "small"),
        "left": ("assistant", "small"),
        "right": ("critic", "big"),
        "pick": ("vote", ""),
    }
    assert edges == {("plan", "left"), ("plan", "right"), ("left", "pick"), ("right", "pick")}
    assert [n for n, a in nodes.items() if "output" in a["class"].split()] == ["pick"]
    coordinator = [g for g in root.iter(f"{SVG}g") if g.get("class") == "coordinator"]
    assert len(coordinator) == 1 and "CEO big · up to 2 rounds" in "".join(coordinator[0].itertext())
    judged = DIAMOND.replace("{model: big, max_rounds: 2}", "{model: big, max_rounds: 2, evaluator: small}")
    svg_judged = render_svg(picture_from_spec(load_spec_text(judged, "diamond.yaml")))  # the evaluator went unseen
    assert "CEO big · up to 2 rounds · evaluator small" in "".join(ET.fromstring(svg_judged).itertext())
    # DAG order reads left to right: every edge points right
    assert all(box_x(root, a) < box_x(root, b) for a, b in edges)
    texts = "".join(root.itertext())
    assert "small" in texts and "critic" in texts and "no model" in texts  # labels: role and alias


def test_a_candidate_is_drawn_with_the_ids_of_its_runnable_yaml() -> None:
    candidate = CandidateGraph(
        (NodeChoice("assistant", "l1"), NodeChoice("assistant", "l8"), NodeChoice("vote", None)),
        frozenset({(0, 2), (1, 2)}),
        CeoChoice("l8", 3),
    )
    picture = picture_from_candidate(candidate)
    spec = candidate.to_spec("best", {"l1": _model("sim/llama-1b"), "l8": _model("sim/llama-8b")})
    from_spec = picture_from_spec(spec)
    assert {n.id for n in picture.nodes} == {n.id for n in from_spec.nodes}
    assert set(picture.edges) == set(from_spec.edges) and picture.output == from_spec.output == "out"
    assert picture.coordinator == "CEO l8 · up to 3 rounds"


def _model(route: str):  # type: ignore[no-untyped-def]
    from agentscale.graphs.spec import ModelSpec

    return ModelSpec(model=route, params_b=1.0)


def test_names_are_escaped_in_the_svg() -> None:
    text = DIAMOND.replace("small", '"<b>&amp"').replace("name: diamond", "name: diamond\ndescription: x")
    svg = render_svg(picture_from_spec(load_spec_text(text, "evil.yaml")))
    nodes, _, root = parse(svg)  # would not parse if a name were written as markup
    assert nodes["plan"]["data-model"] == "<b>&amp" and not list(root.iter("b"))


def test_png_is_a_real_image(tmp_path: Path) -> None:
    path = write_drawing(picture_from_spec(load_spec_text(DIAMOND, "d.yaml")), tmp_path / "d.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 600 and height > 150


def test_draw_cli_writes_svg_and_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = tmp_path / "diamond.yaml"
    graph.write_text(DIAMOND)
    assert main(["draw", str(graph), "-o", str(tmp_path / "x.svg"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"path": str(tmp_path / "x.svg"), "graph": "diamond", "nodes": 4, "edges": 4}
    assert parse((tmp_path / "x.svg").read_text())[1]
    assert main(["draw", str(graph)]) == 0 and (tmp_path / "diamond.svg").exists()  # default: beside the graph
    assert "drew 4 nodes and 4 edges of 'diamond'" in capsys.readouterr().err
    single = tmp_path / "single.yaml"
    single.write_text("name: single\nmodels: {m: {model: openai/x}}\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    assert main(["draw", str(single)]) == 0
    assert "drew 1 node and 0 edges of 'single'" in capsys.readouterr().err  # it said "1 nodes"
    assert main(["draw", str(graph), "-o", str(tmp_path / "x.gif")]) == 1
    assert ".svg or .png" in capsys.readouterr().err
    assert main(["draw", str(graph), "-o", str(tmp_path)]) == 1  # it said "not a file without suffix"
    assert f"{tmp_path} is a directory; give a file path" in " ".join(capsys.readouterr().err.split())
    assert main(["draw", str(graph), "-o", str(graph / "x.svg")]) == 1  # under a file: a traceback before
    assert f"cannot write {graph / 'x.svg'} ({graph} is a file)" in " ".join(capsys.readouterr().err.split())
    assert main(["draw", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert "missing.yaml" in err and "not found" in err and "Traceback" not in err
    graph.write_text(DIAMOND.replace("role: vote", "role: voter"))
    assert main(["draw", str(graph)]) == 1
    assert "nodes[3].role" in capsys.readouterr().err


def chain_yaml(length: int) -> str:
    nodes = "".join(f"  - {{id: n{i}, role: assistant, model: m}}\n" for i in range(length))
    edges = "".join(f"  - n{i} -> n{i + 1}\n" for i in range(length - 1))
    return f"name: chain\nmodels: {{m: {{model: openai/x}}}}\nnodes:\n{nodes}edges:\n{edges}"


def test_a_long_graph_is_a_smaller_png_and_an_endless_one_is_refused(tmp_path: Path) -> None:
    """A 71-node chain at twice its SVG's size passed cairo's 32,767 px and crashed with a traceback
    (the drawing audit): it is drawn smaller; one too long to read at half size is refused in words."""
    long = picture_from_spec(load_spec_text(chain_yaml(71), "chain.yaml"))
    data = write_drawing(long, tmp_path / "long.png").read_bytes()
    width, _ = struct.unpack(">II", data[16:24])
    assert 16_000 < width <= 32_000
    endless = picture_from_spec(load_spec_text(chain_yaml(300), "chain.yaml"))
    with pytest.raises(AgentScaleError, match=r"too large for a legible PNG .*: write \.svg"):
        write_drawing(endless, tmp_path / "endless.png")
    assert not (tmp_path / "endless.png").exists()


DEBATE = """\
name: debate-3
models:
  m: {model: openai/x}
nodes:
  - {id: s1, role: assistant, model: m}
  - {id: s2, role: assistant, model: m}
  - {id: c1, role: critic, model: m}
  - {id: out, role: fuser, model: m}
edges:
  - s1, s2 -> c1
  - s1, s2, c1 -> out
"""


def test_an_edge_that_skips_a_column_runs_below_the_nodes_between() -> None:
    """s1 -> out was drawn straight behind c1 and seemed to come out of it: the picture read as
    'c1 sends three edges to out' (the drawing audit)."""
    root = ET.fromstring(render_svg(picture_from_spec(load_spec_text(DEBATE, "debate.yaml"))))
    rects = {g.get("data-node"): g.find(f"{SVG}rect") for g in root.iter(f"{SVG}g") if "node" in g.get("class", "")}
    bottom = max(float(r.get("y", 0)) + float(r.get("height", 0)) for r in rects.values() if r is not None)
    routes = {
        (p.get("data-from"), p.get("data-to")): [float(v) for v in re.findall(r"-?\d+\.?\d*", p.get("d", ""))]
        for p in root.iter(f"{SVG}path")
        if p.get("class") == "edge"
    }
    for skipping in (("s1", "out"), ("s2", "out")):
        heights = routes[skipping][1::2]  # the y of every point of the path
        assert max(heights) > bottom  # along a lane below every node
    assert max(routes[("c1", "out")][1::2]) < bottom  # a neighbouring column's edge stays a plain curve
    assert float(root.get("height", 0)) > max(max(r[1::2]) for r in routes.values())  # inside the picture


def test_the_ceo_band_is_wide_enough_for_its_label() -> None:
    """A one-node coordinator graph cut its label off at 'CEO big · up to 3 rounds (ste'."""
    text = "name: led\nmodels: {big: {model: openai/x}, small: {model: openai/y}}\n"
    text += "nodes:\n  - {id: a, role: assistant, model: small}\n"
    text += "coordinator: {model: big, max_rounds: 3, evaluator: small}\n"
    picture = picture_from_spec(load_spec_text(text, "led.yaml"))
    root = ET.fromstring(render_svg(picture))
    band = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "coordinator")
    label = "".join(band.itertext())
    assert label.endswith("(steers every round)") and "evaluator small" in label
    assert float(root.get("width", 0)) >= len(label) * 7  # 12 px DejaVu Sans: about 6.6-7.2 px a character


def _rect(root: ET.Element, node_id: str) -> ET.Element:
    group = next(g for g in root.iter(f"{SVG}g") if g.get("data-node") == node_id)
    rect = group.find(f"{SVG}rect")
    assert rect is not None
    return rect


def test_a_nodes_tooltip_names_the_route_behind_its_alias() -> None:
    """The box shows the alias (`small`); its hover text says which model that is."""
    root = ET.fromstring(render_svg(picture_from_spec(load_spec_text(DIAMOND, "diamond.yaml"))))
    titles = {
        g.get("data-node"): "".join(g.find(f"{SVG}title").itertext())  # type: ignore[union-attr]
        for g in root.iter(f"{SVG}g")
        if g.get("data-node")
    }
    assert titles["plan"] == "plan: assistant on openai/gpt-4o-mini"
    assert titles["right"] == "right: critic on openai/gpt-4o"
    assert titles["pick"] == "pick: vote"  # no model, no route


def test_a_column_is_ordered_by_its_nodes_predecessors_so_edges_do_not_cross() -> None:
    """`c` reads `b` and `d` reads `a`: drawn in file order (c above d) the two edges cross; ordered
    by their predecessors' rows, `d` is beside `a` and `c` beside `b`."""
    text = """\
name: crossing
nodes:
  - {id: a, role: assistant, model: openai/gpt-4o-mini}
  - {id: b, role: assistant, model: openai/gpt-4o-mini}
  - {id: c, role: assistant, model: openai/gpt-4o-mini}
  - {id: d, role: assistant, model: openai/gpt-4o-mini}
  - {id: out, role: vote}
edges:
  - b -> c
  - a -> d
  - c, d -> out
"""
    root = ET.fromstring(render_svg(picture_from_spec(load_spec_text(text, "crossing.yaml"))))
    y = {n: float(_rect(root, n).get("y", "nan")) for n in "abcd"}
    assert y["a"] < y["b"] and y["d"] < y["c"]


def test_draw_json_counts_nodes_and_edges_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json's "nodes" and "edges" (mutant D2 swapped them; the existing test draws a diamond: 4 and 4)."""
    chain = tmp_path / "chain.yaml"
    chain.write_text(
        "name: chain\nmodels: {m: {model: openai/x}}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
        "  - {id: b, role: critic, model: m}\n  - {id: c, role: critic, model: m}\nedges: ['a -> b', 'b -> c']\n"
    )
    assert main(["draw", str(chain), "-o", str(tmp_path / "c.svg"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["nodes"], result["edges"]) == (3, 2)


def test_every_edge_has_its_own_head_and_a_drawing_refers_to_no_id() -> None:
    """Heads were an SVG marker with a page-wide id: in a report, every drawing's edges used the first
    drawing's marker, and a first drawing inside a closed <details> (a trial's graph) took every
    head off the visible ones (seen in Chromium). Each edge now draws its head, ending where it ends."""
    svg = render_svg(picture_from_spec(load_spec_text(DEBATE, "debate.yaml")))
    assert "url(#" not in svg and " id=" not in svg
    paths = list(ET.fromstring(svg).iter(f"{SVG}path"))
    pairs = [(edge, head) for edge, head in itertools.pairwise(paths) if edge.get("class") == "edge"]
    assert len(pairs) == 5 and all(head.get("class") == "head" for _, head in pairs)
    for edge, head in pairs:
        end = re.findall(r"-?\d+\.?\d*", edge.get("d", ""))[-2:]
        tip = re.findall(r"-?\d+\.?\d*", head.get("d", ""))[2:4]
        assert tip == end

"""HTML building blocks for the report: escaped tables and sections, JSON islands, the document.

Everything a run stores (questions, answers, model output, graph and node names) is data, never
markup: text goes through :func:`html.escape`, and data for the page's script travels as JSON in a
`<script type="application/json">` island with `<`, `>` and `&` written as `\\u003c`-style escapes,
so no stored text can close the island or open a tag. The script itself only ever writes text
nodes (`textContent`), never `innerHTML`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from html import escape
from importlib.resources import files
from typing import Any

from agentscale.models.cost import usd_text

SIMULATED_NOTE = (
    "SIMULATED: these numbers come from agentscale's simulated model population (sim/ routes), "
    "not from real models. They show how graphs and their search behave, not how well any real model answers."
)


def json_island(element_id: str, data: Any) -> str:
    """Data for the page's script; safe whatever the strings contain."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, css_class: str = "") -> str:
    """A table of escaped cells; a cell given as `Markup` is inserted as is (drawings, charts)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{escape(css_class)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Markup(str):
    """HTML produced by this package (an SVG drawing, a chart): inserted without escaping."""


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return value
    return escape("—" if value is None else str(value))


def section(title: str, body: str, *, section_id: str = "") -> str:
    anchor = f' id="{escape(section_id)}"' if section_id else ""
    return f"<section{anchor}><h2>{escape(title)}</h2>{body}</section>"


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """Headline figures as cards: label above, value below."""
    cards = "".join(
        f'<div class="fact"><div class="fact-label">{escape(label)}</div>'
        f'<div class="fact-value">{_cell(value)}</div></div>'
        for label, value in pairs
    )
    return f'<div class="facts">{cards}</div>'


def paragraph(text: str, *, css_class: str = "") -> str:
    return f'<p class="{escape(css_class)}">{escape(text)}</p>'


def simulated_banner() -> str:
    return f'<div class="simulated" role="note">{escape(SIMULATED_NOTE)}</div>'


def items_section(title: str, element_id: str, items: dict[str, Any], traces: dict[str, Any]) -> str:
    """A section with the item table the page's script renders (filters, pages, a click on a row
    opens its node trace); the data travels in two JSON islands, the traces parsed on first click."""
    return section(
        title,
        paragraph("Click a row for what each node was asked and said.")
        + f'<div class="items" data-items="{escape(element_id)}"></div>'
        + json_island(f"data-{element_id}", items)
        + json_island(f"data-{element_id}-traces", traces),
        section_id=element_id,
    )


def _asset(name: str) -> str:
    return (files("agentscale.report") / "assets" / name).read_text(encoding="utf-8")


def document(title: str, body: str) -> str:
    """The whole page: styles and script inline (the file works offline, from disk or a mail).

    The Content-Security-Policy admits only the page's own script (by its hash) and nothing from
    the network: should a stored text ever slip past escaping, an injected script or inline event
    handler would still not run.
    """
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        f"<title>{escape(title)}</title><style>{_asset('report.css')}</style></head>"
        f"<body><main>{body}</main><script>{script}</script></body></html>\n"
    )


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def fmt_interval(ci: Sequence[float] | None) -> str:
    return "—" if not ci else f"[{ci[0]:.1%}, {ci[1]:.1%}]"


def fmt_number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "unknown"
    return f"{value:.3g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def fmt_usd(value: float | None) -> str:
    return "unknown" if value is None else usd_text(value)

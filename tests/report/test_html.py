"""The page's building blocks (report/html.py): a stored text is shown as text, never as markup."""

from __future__ import annotations

from html import escape

from agentscale.report.html import Markup, facts, table

ALIAS = '<img src=x onerror="window.__pwned=1">'  # a model alias the space loader accepts


def test_table_and_fact_cells_escape_stored_text_and_insert_only_markup_as_is() -> None:
    """A model alias holding a tag reaches the optimize page's tables through graph names ("single
    call of <alias>"): unescaped, it became an image whose error handler ran in the reader's browser."""
    name = f"single call of {ALIAS}"
    html = table(["graph", "accuracy"], [[name, None]])
    assert f"<td>{escape(name)}</td><td>—</td>" in html and ALIAS not in html
    card = facts([("leading graph", name)])
    assert escape(name) in card and ALIAS not in card
    drawing = Markup('<svg class="graph-drawing"></svg>')  # the package's own HTML: inserted as is
    assert f"<td>{drawing}</td>" in table(["graph"], [[drawing]])

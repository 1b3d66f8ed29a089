"""The static site is publishable as it is: every in-page link has its target, every relative
link resolves to a file inside docs/site/, and the page loads nothing from elsewhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

SITE = Path(__file__).resolve().parents[2] / "docs" / "site"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"])
        if tag in ("script", "img", "link", "iframe") and (values.get("src") or values.get("href")):
            self.sources.append(values.get("src") or values.get("href"))


def _parse() -> _Links:
    parser = _Links()
    parser.feed((SITE / "index.html").read_text(encoding="utf-8"))
    return parser


def test_in_page_links_have_targets():
    page = _parse()
    anchors = [h[1:] for h in page.hrefs if h.startswith("#")]
    assert len(anchors) >= 20
    assert [a for a in anchors if a not in page.ids] == []


def test_relative_links_resolve_inside_the_site():
    page = _parse()
    relative = [h for h in page.hrefs if not h.startswith("#") and not re.match(r"^[a-z]+:", h)]
    assert relative
    for href in relative:
        target = (SITE / href).resolve()
        assert target.is_relative_to(SITE.resolve()), href
        assert target.exists(), href


def test_the_page_is_self_contained():
    page = _parse()
    assert page.sources == []
    html = (SITE / "index.html").read_text(encoding="utf-8")
    assert '<pre class="mermaid">sequenceDiagram' in html
    assert "<table>" in html

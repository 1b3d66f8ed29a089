"""Every generated file, as text, keyed by its path under docs/: the one place that decides the
output layout, used both to write the docs and to check them for drift."""

from __future__ import annotations

import json
from typing import Any, Final

from protocol_spec import asyncapi, jsonschema, markdown, openapi, site
from protocol_spec.catalog import Catalog

#: Folders whose every file is generated (a stale extra file there is drift too).
GENERATED_DIRS: Final = ("schema", "site")


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def render_all(catalog: Catalog) -> dict[str, str]:
    """{relative path under docs/: file text} for every generated document."""
    out: dict[str, str] = {}
    machine: dict[str, str] = {f"schema/{path}": _json(doc) for path, doc in jsonschema.render(catalog).items()}
    machine["asyncapi.json"] = _json(asyncapi.render(catalog))
    machine["openapi.json"] = _json(openapi.render(catalog))
    text = markdown.render(catalog)
    out["protocol.md"] = text
    out.update(machine)
    # The site is self-contained: its page links to the same relative paths as protocol.md.
    out["site/index.html"] = site.render(text, f"wsserver protocol {catalog.version}")
    out.update({f"site/{path}": body for path, body in machine.items()})
    return dict(sorted(out.items()))

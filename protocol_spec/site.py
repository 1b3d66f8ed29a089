"""Static HTML rendering of docs/protocol.md for publishing (docs/site/): one self-contained page
(no scripts, no external assets) beside copies of the machine-readable documents it links to."""

from __future__ import annotations

import html
from typing import Final

from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin

from protocol_spec.markdown import HEADER

_STYLE: Final = """
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem 2rem 4rem; }
h1, h2, h3 { line-height: 1.25; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; margin-top: 2.5em; }
h3 { margin-top: 2em; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, monospace; background: #f6f8fa; padding: .1em .3em; border-radius: 4px; }
pre { background: #f6f8fa; padding: 1rem; overflow-x: auto; border-radius: 6px; }
pre code { background: none; padding: 0; }
pre.mermaid { border-left: 4px solid #8250df; }
table { border-collapse: collapse; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .35em .7em; vertical-align: top; text-align: left; }
th { background: #f6f8fa; }
a { color: #0969da; }
"""


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True}).enable("table").use(anchors_plugin, min_level=2, max_level=3)
    default_fence = md.renderer.rules["fence"]

    def fence(_renderer, tokens, idx, options, env):  # type: ignore[no-untyped-def]
        token = tokens[idx]
        if token.info.strip() == "mermaid":
            # Mermaid source, as Mermaid's own loader expects it; readable as it is without scripts.
            return f'<pre class="mermaid">{html.escape(token.content)}</pre>\n'
        return default_fence(tokens, idx, options, env)

    md.add_render_rule("fence", fence)
    return md


def render(markdown_text: str, title: str) -> str:
    """The HTML page of the protocol reference."""
    body = _renderer().render(markdown_text.replace(HEADER, "", 1))
    return (
        "<!DOCTYPE html>\n"
        f"{HEADER}\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )

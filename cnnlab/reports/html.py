"""The report's Markdown as one self-contained HTML page (markdown-it-py, CommonMark plus tables), with every
image embedded: it can be mailed or uploaded alone, and nothing is fetched from elsewhere."""

import base64
import html
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt

CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1,h2{border-bottom:1px solid #ddd;padding-bottom:.2em}h2{margin-top:2.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%}code{background:#f2f2f2;padding:0 3px}"""


def to_html(md: str, base: Path, title: str, fragment: bool = False) -> str:
    """`md` as HTML; images are read from under `base` and embedded (a missing one is named, never fetched).
    Raw HTML in the Markdown is shown as text: run names and class names are the user's."""
    base = Path(base).resolve()
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")

    def image(renderer, tokens, idx, options, env):
        token = tokens[idx]
        src = unquote(token.attrGet("src") or "")
        path = (base / src).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return f"[missing image: {html.escape(src)}]"
        alt = html.escape(renderer.renderInlineAsText(token.children or [], options, env))
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'

    parser.add_render_rule("image", image)
    body = parser.render(md)
    if fragment:
        return body
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}</body></html>\n")

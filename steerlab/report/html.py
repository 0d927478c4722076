"""One self-contained HTML page: headings, short texts, tables and plotly figures.

plotly.js is embedded once (inline), so the page opens offline and in CI's headless browser.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f3f3f3; } .note { color: #555; font-size: 0.95em; }
"""


@dataclass
class Section:
    """A report section: ``paragraphs`` (plain text), ``tables`` (rows of dicts), ``figures`` (plotly)."""

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Sequence[dict[str, Any]]] = ()
    figures: Sequence[Any] = field(default_factory=list)


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_report(path: str | os.PathLike, title: str, sections: Sequence[Section], intro: str = "") -> Path:
    """Write the page; returns its path."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    plotly_js = "inline"  # embedded with the first figure only
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(text)}</p>" for text in section.paragraphs]
        parts += [_table(rows) for rows in section.tables]
        for figure in section.figures:
            parts.append(figure.to_html(full_html=False, include_plotlyjs=plotly_js))
            plotly_js = False
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(path)
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link: steerlab does not write through links. Remove it or pick "
                         "another path.")
    # Written aside and renamed: an interrupted write never leaves half a page in place of the old one.
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path

"""One self-contained HTML page: a summary with flags, a table of contents, then headings, short texts,
tables and plotly figures.

plotly.js is embedded once (inline), so the page opens offline and in CI's headless browser.
Tables wrap their cells to fit the page; figures go through
:func:`steerlab.report.figure_layout.tidy_figure`; with ``metrics``, the summary lists what the
run found (:mod:`steerlab.report.summary`) and every flag (:mod:`steerlab.report.flags`), and each
flag is repeated at the top of the section it concerns.
"""

from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1040px; margin: 2em auto; padding: 0 20px; color: #222;
       line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; max-width: 100%; font-size: 0.92em; }
td, th { border: 1px solid #ccc; padding: 4px 6px; text-align: left; vertical-align: top; }
td { overflow-wrap: anywhere; } table.wide { font-size: 0.82em; }
th { background: #f3f3f3; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
td.flagged { background: #fdebd0; } .note { color: #555; font-size: 0.95em; }
.figure { max-width: 100%; margin: 1em 0; }
.summary { background: #f7f9fc; border: 1px solid #d6dde8; padding: 0.2em 1.2em 0.8em; }
.summary h2 { margin-top: 0.6em; } .summary ul { padding-left: 1.2em; }
.flag { background: #fff4e5; border-left: 4px solid #e67e22; padding: 6px 10px; margin: 0.6em 0; }
.flag-kind { font-weight: 600; color: #a04000; } .flag-count { color: #a04000; font-size: 0.9em; }
nav#contents ol { columns: 2; column-gap: 2em; }
"""
FLAG_MARK = "\u2691"  # ⚑
WIDE_TABLE = 8  # tables with more columns get a smaller font, to fit the page without breaking words
FLAG_CHECKS = ("steering outside its KL budget", "validation / cross-validation far from held-out",
               "empty or degenerate generations", "NaN or missing table cells",
               "accuracy at the class balance or stuck at one value", "layers where every method is at chance")


@dataclass
class Section:
    """A report section: ``paragraphs`` (plain text), ``tables`` (rows of dicts), ``figures`` (plotly)."""

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Sequence[dict[str, Any]]] = ()
    figures: Sequence[Any] = field(default_factory=list)


def write_report(path: str | os.PathLike, title: str, sections: Sequence[Section], intro: str = "",
                 metrics: Mapping[str, Any] | None = None) -> Path:
    """Write the page; returns its path.

    ``metrics``: the run's metrics.json dict (JSON-ready: plain numbers, NaN as None), for the summary's
    findings and flags; without it the summary holds only the flags read from the tables.
    """
    from steerlab.report.flags import all_flags, section_for
    from steerlab.report.summary import findings

    metrics = metrics or {}
    anchors = _anchors([s.title for s in sections])
    flags = all_flags(metrics, [(s.title, rows) for s in sections for rows in s.tables])
    placed = [(flag, section_for(flag, [s.title for s in sections])) for flag in flags]
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    anchor_of: dict[str, str] = {}
    for section, anchor in zip(sections, anchors):
        anchor_of.setdefault(section.title, anchor)
    parts.append(_summary(findings(metrics), placed, anchor_of))
    parts.append(_contents(sections, anchors, placed, anchor_of))
    plotly_js: Any = "inline"  # embedded with the first figure only
    for section, anchor in zip(sections, anchors):
        parts.append(f"<section id='{anchor}'><h2>{html.escape(section.title)}</h2>")
        parts += [f"<div class='flag'>{FLAG_MARK} <span class='flag-kind'>{html.escape(flag.kind)}</span>: "
                  f"{html.escape(flag.message)}</div>" for flag, where in placed
                  if where is not None and anchor_of[where] == anchor]  # beside the first section of that title
        parts += [f"<p>{html.escape(text)}</p>" for text in section.paragraphs]
        parts += [_table(rows) for rows in section.tables]
        for figure in section.figures:
            parts.append(_figure(figure, plotly_js))
            plotly_js = False
        parts.append("</section>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return _write_atomically(Path(path), page)


def _anchors(titles: Sequence[str]) -> list[str]:
    """A unique ``id`` per section title (``s-where-truth-lives``, ``s-run-2`` for a repeat)."""
    seen: dict[str, int] = {}
    anchors = []
    for title in titles:
        slug = "s-" + (re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section")
        seen[slug] = seen.get(slug, 0) + 1
        anchors.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return anchors


def _summary(lines: Sequence[str], placed: Sequence[tuple[Any, str | None]], anchor_of: Mapping[str, str]) -> str:
    parts = ["<section id='summary' class='summary'><h2>Summary</h2>"]
    if lines:
        parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")
    if placed:
        parts.append(f"<h3>{FLAG_MARK} {len(placed)} flag{'s' if len(placed) != 1 else ''}: results to read with "
                     "care</h3><ul>")
        for flag, where in placed:
            place = (html.escape(flag.where) if where is None else
                     f"<a href='#{anchor_of[where]}'>{html.escape(where)}</a>")
            parts.append(f"<li><span class='flag-kind'>{html.escape(flag.kind)}</span> ({place}): "
                         f"{html.escape(flag.message)}</li>")
        parts.append("</ul>")
    else:
        parts.append(f"<p>No flags. Checked: {'; '.join(FLAG_CHECKS)}.</p>")
    parts.append("</section>")
    return "".join(parts)


def _contents(sections: Sequence[Section], anchors: Sequence[str], placed: Sequence[tuple[Any, str | None]],
              anchor_of: Mapping[str, str]) -> str:
    items = ["<li><a href='#summary'>Summary</a></li>"]
    for section, anchor in zip(sections, anchors):
        count = sum(where == section.title for _, where in placed) if anchor_of[section.title] == anchor else 0
        mark = f" <span class='flag-count'>{FLAG_MARK} {count}</span>" if count else ""
        items.append(f"<li><a href='#{anchor}'>{html.escape(section.title)}</a>{mark}</li>")
    return f"<nav id='contents'><h2>Contents</h2><ol>{''.join(items)}</ol></nav>"


def _table(rows: Sequence[dict[str, Any]]) -> str:
    from steerlab.report.flags import degenerate, is_missing

    if not rows:
        return ""
    columns = list(dict.fromkeys(column for row in rows for column in row))
    generations = "prompt" in columns  # the other text columns are generated text
    # headers break after @ _ / (recall@<wbr>10%fpr), never inside a word
    head = "".join("<th>" + re.sub(r"([@_/])", r"\1<wbr>", html.escape(str(c))) + "</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            classes = ["number"] if isinstance(value, (int, float)) and not isinstance(value, bool) else []
            note = ""
            if is_missing(value) and column in row:
                classes, note = ["flagged"], "NaN or missing"
            elif generations and column != "prompt" and isinstance(value, str) and degenerate(value):
                classes, note = ["flagged"], f"degenerate generation: {degenerate(value)}"
            attributes = (f" class='{' '.join(classes)}'" if classes else "") + (f" title='{note}'" if note else "")
            text = _cell(value) + (f" {FLAG_MARK}" if note else "")
            cells.append(f"<td{attributes}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    wide = " class='wide'" if len(columns) > WIDE_TABLE else ""
    return f"<div class='table-wrap'><table{wide}><tr>{head}</tr>{''.join(body)}</table></div>"


def _cell(value: Any) -> str:
    """A table cell's text: floats to 3 significant digits, NaN / None as n/a, dicts as ``key: value``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def _figure(figure: Any, plotly_js: Any) -> str:
    from steerlab.report.figure_layout import tidy_figure

    tidy_figure(figure)
    return ("<div class='figure'>" + figure.to_html(full_html=False, include_plotlyjs=plotly_js,
                                                   config={"responsive": True, "displaylogo": False}) + "</div>")


def _write_atomically(path: Path, page: str) -> Path:
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

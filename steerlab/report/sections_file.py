"""Report sections as JSON, so each stage can write its part and ``steerlab report DIR`` assembles the page.

``DIR/sections/<order>-<stage>.json`` holds a list of sections: title, paragraphs, tables
(rows of dicts) and plotly figures in plotly's own JSON (``plotly.io.to_json``): data, never code.
``DIR/sections/page.json`` holds the page's title and intro (what ran), so a rebuilt page keeps them;
the summary and flags are recomputed from ``DIR/metrics.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from steerlab.report.html import Section, write_report

PAGE_FILE = "page.json"

STAGE_ORDER = ("probes", "steering", "hallucination", "sae", "run")


def save_sections(out: str | os.PathLike, stage: str, sections: Sequence[Section]) -> Path:
    """Write one stage's sections to ``out/sections/``; returns the file."""
    import plotly.io as pio

    order = STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)
    path = Path(out) / "sections" / f"{order:02d}-{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{"title": s.title, "paragraphs": list(s.paragraphs), "tables": [list(t) for t in s.tables],
                "figures": [json.loads(pio.to_json(f)) for f in s.figures]} for s in sections]
    path.write_text(json.dumps(records, default=str), encoding="utf-8")
    return path


def load_sections(out: str | os.PathLike) -> list[Section]:
    """Every stage's sections under ``out/sections/``, in pipeline order."""
    import plotly.io as pio

    folder = Path(out) / "sections"
    files = sorted(path for path in folder.glob("*.json") if path.name != PAGE_FILE)
    if not files:
        raise FileNotFoundError(f"{folder}: no report sections. Run `steerlab run`, `steerlab probe` or "
                                "`steerlab demo` with this --out first.")
    return [Section(r["title"], r["paragraphs"], r["tables"], [pio.from_json(json.dumps(f)) for f in r["figures"]])
            for path in files for r in json.loads(path.read_text(encoding="utf-8"))]


def save_page(out: str | os.PathLike, title: str, intro: str = "") -> Path:
    """Record the page's title and intro beside the sections (``steerlab report`` reuses them)."""
    path = Path(out) / "sections" / PAGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"title": title, "intro": intro}), encoding="utf-8")
    return path


def rebuild_report(out: str | os.PathLike, title: str | None = None) -> Path:
    """``out/report.html`` again from ``out/sections/`` and ``out/metrics.json``: the same title (unless
    ``title`` is given), summary, flags and sections as the command that wrote the folder."""
    out = Path(out)
    sections = load_sections(out)
    page_file = out / "sections" / PAGE_FILE
    page = json.loads(page_file.read_text(encoding="utf-8")) if page_file.is_file() else {}
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
    return write_report(out / "report.html", title or page.get("title") or f"steerlab: {out.name}", sections,
                        intro=page.get("intro", ""), metrics=metrics)

"""Report sections as JSON, so each stage can write its part and ``steerlab report DIR`` assembles the page.

``DIR/sections/<order>-<stage>.json`` holds a list of sections: title, paragraphs, tables
(rows of dicts) and plotly figures in plotly's own JSON (``plotly.io.to_json``): data, never code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from steerlab.report.html import Section

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
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{folder}: no report sections. Run `steerlab run`, `steerlab probe` or "
                                "`steerlab demo` with this --out first.")
    return [Section(r["title"], r["paragraphs"], r["tables"], [pio.from_json(json.dumps(f)) for f in r["figures"]])
            for path in files for r in json.loads(path.read_text(encoding="utf-8"))]

"""A plain-text summary table for the terminal (no extra dependency).

    >>> print(text_table([{"layer": 0, "accuracy": 0.931}, {"layer": 1, "accuracy": 0.94}]))
    layer  accuracy
    -----  --------
        0     0.931
        1     0.940
"""

from __future__ import annotations

from typing import Any, Sequence


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """Rows of dicts as aligned columns; numbers right-aligned with ``digits`` decimals."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if value != value else f"{value:.{digits}f}"
        return "" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), (int, float)) for row in rows) for c in columns]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if right else v.ljust(w)
                         for v, w, right in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])

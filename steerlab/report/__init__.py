"""Stage 5: a self-contained HTML report (plotly embedded, works offline)."""

from steerlab.report.html import Section, write_report

__all__ = ["Section", "write_report"]

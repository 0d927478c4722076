"""The report's "Run" section: seconds per stage and package versions, as tables (never a dict's repr)."""

from __future__ import annotations

from typing import Mapping

from steerlab.report.html import Section


def run_info_section(timings: Mapping[str, float], versions: Mapping[str, str]) -> Section:
    """``Section("Run")`` with one row per stage (seconds, share of the total) and one per package.

    >>> section = run_info_section({"capture": 3.0, "probes": 1.0}, {"torch": "2.3"})
    >>> section.tables[0][-1], section.tables[1]
    ({'stage': 'total', 'seconds': 4.0, 'share': '100%'}, [{'package': 'torch', 'version': '2.3'}])
    """
    total = sum(timings.values())
    rows = [{"stage": stage, "seconds": round(seconds, 2), "share": f"{seconds / total:.0%}" if total else ""}
            for stage, seconds in timings.items()]
    rows.append({"stage": "total", "seconds": round(total, 2), "share": "100%" if total else ""})
    return Section("Run", [f"Wall-clock seconds per stage ({total:.0f} s in all) and the versions the results "
                           "depend on."],
                   tables=[rows, [{"package": name, "version": version} for name, version in versions.items()]])

"""report.html in a real headless Chromium: no console errors, and the screenshot is not blank."""

import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")


def render(page: Path, screenshot: Path) -> str:
    """Load the page headless, save a screenshot, return Chromium's log (console messages included)."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
             "--window-size=1100,2000", f"--screenshot={screenshot}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    return result.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]


def non_background_share(png: Path) -> float:
    """Share of decoded image bytes that are neither 0 nor 255 (a blank page is almost all one of them)."""
    data, chunks = png.read_bytes(), []
    position = 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"IDAT":
            chunks.append(data[position + 8:position + 8 + length])
        position += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    return sum(byte not in (0, 255) for byte in pixels[::7]) / len(pixels[::7])


def test_the_console_check_catches_a_broken_page(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    assert console_errors(render(broken, tmp_path / "broken.png"))


def test_report_renders_without_console_errors_and_is_not_blank(tmp_path):
    import plotly.graph_objects as go

    from steerlab.report import Section, write_report

    figure = go.Figure(go.Scatter(x=[0, 1, 2, 3], y=[0.93, 0.91, 0.66, 0.65]))
    page = write_report(tmp_path / "report.html", "A report", [
        Section("Figures", ["Some text."], tables=[[{"a": 1, "b": 0.5}]], figures=[figure, figure])])
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    log = render(page, tmp_path / "report.png")
    assert not console_errors(log), console_errors(log)
    render(blank, tmp_path / "blank.png")
    assert non_background_share(tmp_path / "report.png") > 5 * non_background_share(tmp_path / "blank.png") + 0.001


# The page's structure, measured in the browser: a script appended to a copy of the page writes its findings
# into the DOM, which Chromium dumps once the page (and plotly) has drawn.
CHECKS_JS = r"""
<script>
window.addEventListener('load', () => setTimeout(() => {
  const W = document.documentElement.clientWidth, out = {viewport: W};
  out.scroll_width = document.documentElement.scrollWidth;
  const summary = document.getElementById('summary');
  out.summary_chars = summary ? summary.innerText.trim().length : 0;
  out.wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg') || el.closest('.modebar-container') || el.closest('.js-plotly-tester')) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && (r.right > W + 1 || r.left < -1))
      out.wide.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  out.contents_links = document.querySelectorAll('nav#contents a').length;
  out.broken_links = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href'))
    .filter(h => !document.getElementById(h.slice(1)));
  out.figures = [...document.querySelectorAll('.plotly-graph-div')].map(gd => {
    const r = gd.getBoundingClientRect(), full = gd._fullLayout || {};
    const fig = {title: (full.title && full.title.text) || '', width: r.width, height: r.height,
                 marks: [...gd.querySelectorAll('g.trace path, g.hm image')]
                   .filter(e => e.tagName === 'image' || (e.getAttribute('d') || '').length > 2).length,
                 non_integer_layer_ticks: [], legend_scrolls: false, legend_outside: false, overlapping_labels: []};
    for (const name of Object.keys(full).filter(k => /^[xy]axis\d*$/.test(k))) {
      const axis = full[name], title = (axis.title && axis.title.text) || '';
      if (/\blayers?\b/i.test(title))
        for (const tick of axis._vals || [])
          if (!/^[-\u2212]?\d+$/.test(String(tick.text))) fig.non_integer_layer_ticks.push(`${name}: ${tick.text}`);
    }
    const legend = gd.querySelector('g.legend');
    if (legend) {
      const bar = legend.querySelector('.scrollbar'), lr = legend.getBoundingClientRect();
      fig.legend_scrolls = !!bar && bar.getBoundingClientRect().height > 0;
      fig.legend_outside = lr.right > r.right + 1 || lr.bottom > r.bottom + 1 || lr.left < r.left - 1 || lr.top < r.top - 1;
    }
    const labels = [...gd.querySelectorAll('.textpoint text, .annotation-text')]
      .filter(t => t.textContent.trim()).map(t => [t.textContent, t.getBoundingClientRect()]);
    for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++) {
      const a = labels[i][1], b = labels[j][1];
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 1 && h > 1) fig.overlapping_labels.push(`${labels[i][0]} / ${labels[j][0]}`);
    }
    return fig;
  });
  const pre = document.createElement('pre');
  pre.id = 'page-checks';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 500));
</script>
"""


def page_checks(page: Path, width: int = 1100) -> dict:
    """Load a copy of ``page`` with :data:`CHECKS_JS` in headless Chromium; returns what the script measured:
    ``viewport``, ``scroll_width``, ``summary_chars``, ``wide`` (elements past the page's edges),
    ``contents_links``, ``broken_links`` (in-page links without a target) and per figure its size,
    drawn ``marks``, ``non_integer_layer_ticks``, ``legend_scrolls`` / ``legend_outside`` and
    ``overlapping_labels``."""
    import html
    import json
    import re

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "page.html"
        copy.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECKS_JS + "</body>"), encoding="utf-8")
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={Path(folder) / 'profile'}", "--virtual-time-budget=10000",
             f"--window-size={width},1200", "--dump-dom", copy.as_uri()],
            capture_output=True, text=True, timeout=180)
    found = re.search(r"<pre id=\"page-checks\">(.*?)</pre>", result.stdout, re.S)
    assert found, f"the check script did not run: {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def structure_problems(checks: dict) -> list[str]:
    """Everything :func:`page_checks` found wrong, as sentences (empty for a good page)."""
    problems = []
    if checks["summary_chars"] < 20:
        problems.append("no summary at the top")
    if checks["scroll_width"] > checks["viewport"] or checks["wide"]:
        problems.append(f"wider than the page ({checks['scroll_width']} > {checks['viewport']} px): {checks['wide'][:5]}")
    if not checks["contents_links"] or checks["broken_links"]:
        problems.append(f"table of contents missing or broken links: {checks['broken_links']}")
    for figure in checks["figures"]:
        name = figure["title"] or "untitled figure"
        if figure["height"] < 100 or figure["width"] < 100 or figure["marks"] == 0:
            problems.append(f"{name}: empty ({figure['width']:.0f} x {figure['height']:.0f} px, {figure['marks']} marks)")
        if figure["non_integer_layer_ticks"]:
            problems.append(f"{name}: layer ticks {figure['non_integer_layer_ticks'][:4]}")
        if figure["legend_scrolls"] or figure["legend_outside"]:
            problems.append(f"{name}: legend clipped")
        if figure["overlapping_labels"]:
            problems.append(f"{name}: overlapping labels {figure['overlapping_labels'][:3]}")
    return problems


def crowded_sections():
    """Sections with what used to break the layout: a 12-column table, layer and log axes, a 30-entry
    legend, labels on nearby points."""
    import plotly.graph_objects as go

    from steerlab.report import Section

    layers = go.Figure([go.Scatter(x=list(range(4)), y=[0.9, 0.8, 0.95, 0.7], name=f"method {i}") for i in range(3)])
    layers.update_layout(title="accuracy by layer", xaxis_title="layer")
    legend = go.Figure([go.Scatter(x=[0.001, 0.01, 0.1], y=[i, i + 1, i + 2], name=f"layer {i} (random)")
                        for i in range(30)]).update_layout(title="many layers", height=440)
    legend.update_xaxes(type="log", title_text="KL (nats per token)")
    labels = go.Figure(go.Scatter(x=[0.99, 0.992, 0.5, 0.51], y=[0.16, 0.17, 0.0, 0.0], mode="markers+text",
                                  text=["raptor", "sae_aligned", "sae_auroc", "random"]))
    labels.update_layout(title="detect vs steer")
    wide = [{"method": "steerlab detector (MLP on both states x output odds)",
             **{f"answer recall@{k}%fpr": 0.5 for k in range(11)}}]
    return [Section("Probes", ["Text."], tables=[wide], figures=[layers, legend, labels]),
            Section("Steering with the truth direction", ["More."])]


def test_the_page_structure_holds_in_chromium(tmp_path):
    from steerlab.report import write_report

    metrics = {"steering": {"truth": {"kl_budget": 0.1, "kl_neutral": 0.3, "chosen": None}}}
    page = write_report(tmp_path / "report.html", "A report", crowded_sections(), metrics=metrics)
    checks = page_checks(page)
    assert structure_problems(checks) == []
    assert checks["contents_links"] == 3 and len(checks["figures"]) == 3


def test_the_structure_checks_catch_a_page_laid_out_as_before(tmp_path):
    """The same content written the old way (raw tables, figures as drawn) fails the checks."""
    import html

    sections = crowded_sections()
    table = "".join(f"<th>{html.escape(column)}</th>" for column in sections[0].tables[0][0])
    figures = "".join(f.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
                      for i, f in enumerate(sections[0].figures))
    page = tmp_path / "old.html"
    page.write_text(f"<html><body style='max-width: 1100px'><h1>A report</h1><table style='white-space: nowrap'>"
                    f"<tr>{table}</tr></table>{figures}</body></html>")
    problems = " | ".join(structure_problems(page_checks(page)))
    for expected in ("no summary", "wider than the page", "table of contents", "layer ticks", "legend clipped",
                     "overlapping labels"):
        assert expected in problems, problems

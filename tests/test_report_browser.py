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

"""Every Python block of README.md runs verbatim in a fresh process.

A block preceded by ``<!-- not run: why -->`` is skipped (signatures, hub models); one preceded
by ``<!-- real model ... -->`` runs in the real tier when the real models are pulled.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(?:<!--(?P<marker>[^>]*)-->\n)?```python\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list:
    params = []
    for number, match in enumerate(BLOCK.finditer(README.read_text()), start=1):
        marker = (match.group("marker") or "").strip()
        line = README.read_text()[:match.start("code")].count("\n") + 1
        marks = []
        if marker.startswith("not run"):
            marks.append(pytest.mark.skip(reason=f"README line {line}: {marker}"))
        elif marker.startswith("real model"):
            marks.append(pytest.mark.real)
        params.append(pytest.param(match.group("code"), marker, id=f"block{number}-line{line}", marks=marks))
    return params


def test_readme_has_python_blocks():
    assert len(readme_blocks()) >= 8


@pytest.mark.parametrize("code,marker", readme_blocks())
def test_readme_block_runs(code: str, marker: str, tmp_path: Path):
    if marker.startswith("real model"):
        from steerlab.models import registry

        if registry.cached_folder("smollm2-135m-instruct") is None:
            pytest.skip(f"SmolLM2 is not pulled: run `{registry.get('smollm2-135m-instruct').pull_command}`")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{result.stderr[-3000:]}"

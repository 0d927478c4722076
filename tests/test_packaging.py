"""A wheel install (not editable) carries the demo model and the demo SAEs (issue 13, packaging).

The wheel is built from a copy of the sources (pyproject.toml, README.md, steerlab/, assets/),
so the build's ``build/`` and ``*.egg-info`` never land in the working tree, with this venv's
setuptools and no build isolation (falling back to an isolated build where setuptools is
missing). It is installed with ``pip install --no-deps --target``, and a child python started
outside the source tree imports it with the installed folder first on ``PYTHONPATH`` (the
dependencies still come from this venv). This venv's editable install of steerlab registers a
finder on ``sys.meta_path`` that maps ``steerlab`` to the source tree; the path finder that reads
``PYTHONPATH`` runs before it, and the child also drops it from ``sys.meta_path`` before the
first import, so the source tree cannot answer: the child asserts that ``steerlab``, the demo
model and the demo SAEs all come from the installed folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

CHILD = r"""
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
import steerlab
from steerlab.models.loading import demo_model_path
from steerlab.sae import demo_sae_path, shipped_demo_saes

model = steerlab.load_model("demo")
print(json.dumps({
    "steerlab": steerlab.__file__,
    "demo_model": str(demo_model_path()),
    "model_name_or_path": str(model.hf_model.config._name_or_path),
    "demo_sae": str(demo_sae_path()),
    "saes": shipped_demo_saes(),
    "generated": model.generate(["bakli is in"], max_new_tokens=3),
}))
"""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("steerlab", "assets"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(tmp / "dist"), str(src)])
    (whl,) = (tmp / "dist").glob("steerlab-*.whl")
    return whl


def test_wheel_holds_every_module_and_the_shipped_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("steerlab/assets/demo-model/config.json", "steerlab/assets/demo-model/model.safetensors",
                   "steerlab/assets/demo-model/tokenizer.json", "steerlab/assets/demo-sae/topk-blocks.2.hook_resid_post/cfg.json",
                   "steerlab/data/en_facts.csv", "steerlab/shipped.py",
                   "steerlab/assets/smollm2-sae/topk-blocks.15.hook_resid_post/sae_weights.safetensors"):
        assert needed in names, needed
    sae_cfgs = [n for n in names if n.startswith("steerlab/assets/demo-sae/") and n.endswith("/cfg.json")]
    assert len(sae_cfgs) == len(list((REPO / "assets/demo-sae").glob("*/cfg.json"))) >= 1
    # Every asset file and every module of the source tree: the package list in pyproject.toml is
    # explicit (`find` cannot add the mapped assets folder), so a new subpackage must be added there.
    assets = {"steerlab/assets/" + p.relative_to(REPO / "assets").as_posix()
              for p in (REPO / "assets").rglob("*") if p.is_file() and not p.name.startswith(".")}
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "steerlab").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted((assets | modules) - names)
    assert not missing, f"not in the wheel (add the package to [tool.setuptools] packages in pyproject.toml?): {missing}"


def test_wheel_install_loads_the_demo_model_and_saes_outside_the_source_tree(wheel, tmp_path):
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site), str(wheel)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("STEERLAB_DEMO_MODEL", "STEERLAB_DEMO_SAE", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    out = _run([sys.executable, "-c", CHILD], cwd=elsewhere, env=env).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    site = site.resolve()
    for key in ("steerlab", "demo_model", "model_name_or_path", "demo_sae"):
        path = Path(seen[key]).resolve()
        assert path.is_relative_to(site), f"{key} comes from {path}, not from the installed wheel under {site}"
        assert not path.is_relative_to(REPO), f"{key} comes from the source tree: {path}"
    assert Path(seen["demo_model"]) == Path(seen["model_name_or_path"])
    assert seen["saes"], "no demo SAE found in the wheel install"
    assert "topk-blocks.2.hook_resid_post" in seen["saes"]
    assert len(seen["generated"]) == 1 and seen["generated"][0].strip()

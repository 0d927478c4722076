"""The steerlab command: fast help, capture to disk, clear errors."""

import subprocess
import sys

import torch

from conftest import TEXTS, imported_heavy_modules
from steerlab.capture import Activations
from steerlab.cli import main


def test_help_lists_capture_and_imports_no_heavy_library():
    result = subprocess.run([sys.executable, "-m", "steerlab.cli", "--help"], capture_output=True, text=True, check=True)
    assert "capture" in result.stdout
    assert imported_heavy_modules(["--help"]) == []


def test_capture_command_writes_a_store(model_dir, tmp_path, capsys):
    out = tmp_path / "acts"
    assert main(["capture", str(model_dir("gpt2")), *TEXTS, "--layers", "0,-1", "--out", str(out)]) == 0
    acts = Activations.load(out)
    assert acts.layers == [0, 2] and acts.values.shape == (5, 2, 32)
    assert "mean |h|" in capsys.readouterr().out
    # the same command again resumes the finished capture instead of overwriting it
    assert main(["capture", str(model_dir("gpt2")), *TEXTS, "--layers", "0,-1", "--out", str(out)]) == 0
    assert torch.equal(Activations.load(out).values, acts.values)


def test_capture_command_errors_are_one_clear_line(model_dir, tmp_path, capsys):
    assert main(["capture", str(model_dir("gpt2")), "w1", "--site", "resid", "--out", str(tmp_path / "x")]) == 2
    assert "Unknown site 'resid'" in capsys.readouterr().err
    assert main(["capture", str(tmp_path / "nope"), "w1", "--out", str(tmp_path / "y")]) == 2
    assert "No model directory" in capsys.readouterr().err

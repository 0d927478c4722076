"""The command line's torch thread policy: explicit settings win, busy cores are left alone, the caller's
torch settings are restored after a command."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from steerlab.cli.threads import busy_cores, chosen_threads, command_threads, usable_cores


@pytest.fixture
def no_thread_environment(monkeypatch):
    for name in ("STEERLAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)


def test_explicit_settings_win(no_thread_environment, monkeypatch):
    monkeypatch.setenv("STEERLAB_THREADS", "3")
    assert chosen_threads(default=8) == 3
    monkeypatch.setenv("STEERLAB_THREADS", "zero")
    with pytest.raises(ValueError, match="STEERLAB_THREADS='zero' is not a number"):
        chosen_threads(default=8)
    monkeypatch.setenv("STEERLAB_THREADS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        chosen_threads(default=8)
    monkeypatch.delenv("STEERLAB_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert chosen_threads(default=8) is None  # torch already follows OMP_NUM_THREADS: leave it


def test_the_policy_stays_within_one_and_the_default(no_thread_environment):
    chosen = chosen_threads(default=2)
    assert 1 <= chosen <= 2
    assert chosen_threads(default=1) == 1


@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores")
def test_a_cpu_hog_is_seen_and_leaves_one_thread(no_thread_environment):
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(usable_cores())]
    try:
        time.sleep(0.5)
        assert busy_cores() >= usable_cores() - 0.5
        assert chosen_threads(default=usable_cores()) == 1
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_a_command_restores_the_callers_torch_threads(no_thread_environment, monkeypatch, capsys):
    from steerlab.cli import main

    from threadpoolctl import threadpool_info

    def blas() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before, blas_before = torch.get_num_threads(), blas()
    monkeypatch.setenv("STEERLAB_THREADS", "1")
    with command_threads() as used:
        assert used == torch.get_num_threads() == 1
        assert set(blas()) <= {1}  # numpy's BLAS follows the command's choice
    assert torch.get_num_threads() == before and blas() == blas_before
    monkeypatch.setenv("STEERLAB_THREADS", str(before + 1))
    with command_threads() as used:
        assert used == torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    assert main(["steer", "demo", "no-such-artifact", "the food was"]) == 2  # a command that fails early
    assert torch.get_num_threads() == before
    monkeypatch.setenv("STEERLAB_THREADS", "many")
    assert main(["steer", "demo", "no-such-artifact", "the food was"]) == 2
    assert "STEERLAB_THREADS='many'" in capsys.readouterr().err
    assert torch.get_num_threads() == before
    assert os.environ["STEERLAB_THREADS"] == "many"  # the environment is the user's: never rewritten

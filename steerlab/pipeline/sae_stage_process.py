"""The demo's SAE stage in a second process, beside the other stages (``steerlab demo``).

A second *process*, not a thread: the demo model's work is many small operations, and two
Python threads running them wait for each other's interpreter lock (measured on 2 quiet
cores: the hallucination and SAE stages on a second thread took 67 s beside the other
stages, 39 s alone). The child loads its own copy of the model, runs the stage with its
progress bars off (two processes writing bars garble the terminal) and writes what the
stage returns as data into a temporary folder: its metrics as JSON, its report sections as
:mod:`steerlab.report.sections_file` JSON. Nothing is pickled. The SAE stage is the one
sent aside because it is the longest (importing sae-lens alone takes ~9 s).

Child entry point: ``python -m steerlab.pipeline.sae_stage_process MODEL FOLDER THREADS``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ERROR_FILE = "error.txt"
METRICS_FILE = "sae.json"
LOG_FILE = "stderr.txt"  # the child's warnings, read back only when it fails


class SaeStageProcess:
    """Starts the child at once; :meth:`result` waits for it and returns the stage's ``(metrics, sections)``.

    ``model``: a name or a path the child loads again; ``threads``: the child's torch thread count (0: half
    of torch's default there, at least one).
    :meth:`close` stops a child still running and removes its folder (call it in a ``finally``, so no
    process outlives the command).
    """

    def __init__(self, model: str | os.PathLike, threads: int) -> None:
        self.model = model
        self.folder = Path(tempfile.mkdtemp(prefix="steerlab-sae-stage-"))
        command = [sys.executable, "-m", __name__, os.fspath(model), str(self.folder), str(threads)]
        with open(self.folder / LOG_FILE, "w") as log:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)

    def result(self) -> tuple[dict[str, Any], list[Any]]:
        from steerlab.report.sections_file import load_sections

        self._process.wait()
        error = self.folder / ERROR_FILE
        if self._process.returncode != 0 or error.is_file():
            detail = (error if error.is_file() else self.folder / LOG_FILE).read_text(encoding="utf-8")[-3000:]
            raise RuntimeError(f"the demo's SAE stage, run in a second process, failed (exit code "
                               f"{self._process.returncode}):\n{detail}")
        metrics = json.loads((self.folder / METRICS_FILE).read_text(encoding="utf-8"))
        return metrics, load_sections(self.folder)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    model, folder, threads = argv
    started = time.perf_counter()
    try:
        import torch

        from threadpoolctl import threadpool_limits

        # this process is the demo's own: the command chose its threads (0: half of torch's default, at least 1),
        # for torch and for the BLAS libraries numpy calls (see steerlab.cli.threads)
        torch.set_num_threads(int(threads) or max(1, torch.get_num_threads() // 2))
        threadpool_limits(limits=torch.get_num_threads(), user_api="blas")
        import steerlab
        from steerlab.pipeline.demo_sae_stage import run_demo_sae_stage
        from steerlab.pipeline.output import write_json
        from steerlab.report.sections_file import save_sections

        metrics, sections = run_demo_sae_stage(steerlab.load_model(model), progress=False)
        metrics["seconds_in_its_process"] = round(time.perf_counter() - started, 2)
        save_sections(folder, "sae", sections)
        write_json(Path(folder, METRICS_FILE), metrics)  # last: its presence means the stage finished
    except BaseException as error:  # the parent reads it back and raises it with this text
        Path(folder, ERROR_FILE).write_text(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}",
                                            encoding="utf-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

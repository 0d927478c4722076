"""`steerlab demo` on its own, then beside a 2-process CPU hog this script starts and stops itself.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_demo_busy.py [--hogs 2] [--also-forced-threads 2]
        [--out benchmarks/results_demo_busy.md]

Each run is a fresh `steerlab demo --out DIR --overwrite` process, its thread count left to the
command line's policy (steerlab/cli/threads.py: the cores other processes leave free; this script
unsets OMP_NUM_THREADS / MKL_NUM_THREADS / STEERLAB_THREADS for the child). Reported per run: wall
seconds, the child's CPU seconds, the demo's own stage timings (metrics.json), the thread count
the policy picks at that moment, and the load average before and after. Goal (issue 16): the busy
run within 2x the quiet one. ``--also-forced-threads N`` adds a busy run with STEERLAB_THREADS=N
(what the demo did before the policy: torch's default thread count whatever the load).

On a machine shared with other jobs the "quiet" run is not quiet: the load average printed
says how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_steering_eval import cpu_model  # noqa: E402
from steerlab.cli.threads import busy_cores, usable_cores  # noqa: E402  (the policy's own measurements)

HOG = "import time\nwhile True:\n    pass\n"


def child_environment(threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "STEERLAB_THREADS")}
    env["HF_HUB_OFFLINE"] = "1"
    if threads is not None:
        env["STEERLAB_THREADS"] = str(threads)
    return env


def run_demo(out: Path, threads: int | None) -> dict:
    """One `steerlab demo` process: wall and CPU seconds, stage timings, load around it."""
    busy = busy_cores()
    policy = threads or max(1, min(usable_cores(), int(usable_cores() - busy + 0.5)))
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "steerlab.cli", "demo", "--out", str(out), "--overwrite"], check=True,
                   env=child_environment(threads), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    timings = json.loads((out / "metrics.json").read_text())["timings"]
    return {"wall": wall, "cpu": cpu, "threads": policy, "busy_cores_at_start": busy, "load_before": load_before,
            "load_after": os.getloadavg()[0], "timings": timings}


def with_hog(count: int, fn):
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(count)]
    try:
        time.sleep(1.0)
        return fn()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hogs", type=int, default=2)
    parser.add_argument("--also-forced-threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results_demo_busy.md")
    args = parser.parse_args()
    header = f"CPU: {cpu_model()}, {usable_cores()} usable cores; Python {sys.version.split()[0]}"
    print(header, flush=True)
    runs = {}
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "demo"
        runs["alone (policy)"] = run_demo(out, None)
        print("alone", runs["alone (policy)"], flush=True)
        runs[f"beside a {args.hogs}-process hog (policy)"] = with_hog(args.hogs, lambda: run_demo(out, None))
        print("busy", runs[f"beside a {args.hogs}-process hog (policy)"], flush=True)
        if args.also_forced_threads:
            name = f"beside a {args.hogs}-process hog (STEERLAB_THREADS={args.also_forced_threads})"
            runs[name] = with_hog(args.hogs, lambda: run_demo(out, args.also_forced_threads))
            print("forced", runs[name], flush=True)
    quiet = runs["alone (policy)"]["wall"]
    lines = ["# `steerlab demo` alone and beside a CPU hog (issue 16, goal 3)", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_demo_busy.py {' '.join(sys.argv[1:])}`", "",
             header + ". Each run is a fresh process; its torch threads are the command line's choice "
             "(steerlab/cli/threads.py) unless STEERLAB_THREADS is named.", "",
             "| run | torch threads | busy cores at start | load avg before / after | wall s | x alone | CPU s | "
             "stages (s) |", "|---|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        lines.append(f"| {name} | {run['threads']} | {run['busy_cores_at_start']:.1f} | {run['load_before']:.1f} / "
                     f"{run['load_after']:.1f} | {run['wall']:.1f} | {run['wall'] / quiet:.2f} | {run['cpu']:.1f} | "
                     f"{run['timings']} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

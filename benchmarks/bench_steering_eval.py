"""Steering evaluation: one forward per alpha (the reference) against many alphas per batched forward.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_steering_eval.py [--models demo smollm2-135m-instruct]
        [--threads 1 2] [--repeats 2] [--out benchmarks/results_steering_eval.md]

Side by side in one process, alternating, best of ``--repeats``, at each torch thread count:

* ``sweep``: :func:`steerlab.steering.steering_sweep` over layers x alphas x {vector, same-norm random
  control}, ``batched=False`` (one :func:`evaluate` per setting) vs ``batched=True`` (every
  setting x text as rows of batched forwards with per-row alphas); the rows must agree to 1e-5.
  Efficacy: verdict flips (``flip_rate``); KL and perplexity on neutral text.
* ``kl search`` (the demo model only): the SAE comparison's alpha search for 6 directions, the
  sequential doubling + bisection (:func:`steerlab.sae.compare.search_alpha_sequential` with
  :func:`~steerlab.sae.compare.kl_at`: one forward per alpha) vs
  :func:`steerlab.sae.compare.alphas_for_kl` (every direction's evaluations of a round batched).

The demo model: its truth calibration sweep (4 layers x 13 alphas, 64 neutral topic texts, the
calibration half of held-out cities). SmolLM2-135M-Instruct: 2 layers x 3 alphas, 16 SST-2
sentences as neutral text (benchmarks/real_runs/neutral.txt), 16 Geometry-of-Truth cities
statements + " This statement is" -> " true" / " false" (needs ../shared/data/got_cities.csv
and `steerlab models pull smollm2-135m-instruct`; skipped otherwise).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import steerlab
from steerlab.steering import SteeringVector, flip_rate, steering_sweep

ROOT = Path(__file__).resolve().parents[1]
CITIES = ROOT.parent / "shared" / "data" / "got_cities.csv"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def demo_workload(model):
    """The demo's truth calibration sweep: per-layer mass-mean vectors in median-norm units."""
    from steerlab.datasets import load, split_by_group
    from steerlab.steering.calibration import ALPHAS, norm_scaled_vectors
    from steerlab.probes import DiffMeans
    from steerlab.steering.verdicts import prompts_with_label

    train, test = load("demo/cities", split="train"), load("demo/cities", split="test")
    acts = steerlab.capture(model, train.texts, position="last", progress=False)
    neutral = load("demo/topic", split="test").texts[:64]
    calibration = split_by_group(test, "train", test_share=0.5, seed=0)
    vectors = norm_scaled_vectors(model, DiffMeans().fit(acts, train.labels), neutral)
    efficacy = flip_rate(model, prompts_with_label(calibration, 0), *calibration.verdict_words)
    return vectors, list(ALPHAS), efficacy, neutral


def smollm_workload(model):
    """2 layers x 3 alphas of a random direction scaled to each layer's median norm, cities verdicts."""
    with open(CITIES, newline="") as handle:
        rows = list(csv.DictReader(handle))
    false = [row["statement"] + " This statement is" for row in rows if row["label"] == "0"][:16]
    neutral = (ROOT / "benchmarks" / "real_runs" / "neutral.txt").read_text().splitlines()[:16]
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    vectors = {}
    for layer in (12, 18):
        vector = SteeringVector(direction, layers=layer, model_name=model.name).with_typical_norm(model, neutral)
        vectors[layer] = SteeringVector(vector.unit * vector.typical_norm, layers=layer, model_name=model.name)
    return vectors, [0.25, 0.5, 1.0], flip_rate(model, false, " true", " false", toward_positive=False), neutral


def timed(fn):
    started, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - started, time.process_time() - cpu, value


def bench_sweep(model, workload, repeats: int) -> dict:
    vectors, alphas, efficacy, neutral = workload
    best = {"unbatched": (float("inf"), 0.0), "batched": (float("inf"), 0.0)}
    results = {}
    for _ in range(repeats):
        for name in ("unbatched", "batched"):
            wall, cpu, result = timed(lambda: steering_sweep(model, vectors, alphas, efficacy, neutral, progress=False,
                                                    batched=name == "batched"))
            best[name] = min(best[name], (wall, cpu))
            results[name] = result
    worst = max(max(abs(a.kl - b.kl), abs(a.perplexity - b.perplexity) / a.perplexity, abs(a.efficacy - b.efficacy))
                for a, b in zip(results["unbatched"].rows, results["batched"].rows))
    return {"settings": len(results["batched"].rows), "texts": len(neutral) + len(efficacy.prompts), **best,
            "max_difference": worst}


def bench_kl_search(model, repeats: int) -> dict:
    from steerlab.datasets import load
    from steerlab.sae.compare import KL_BUDGET, alphas_for_kl, kl_at, search_alpha_sequential
    from steerlab.steering.metrics import token_logprobs

    neutral = load("demo/topic", split="test").texts[:64]
    vectors = [SteeringVector(torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed)) * 30.0,
                              layers=2, model_name=model.name) for seed in range(6)]
    best = {"unbatched": (float("inf"), 0.0), "batched": (float("inf"), 0.0)}
    for _ in range(repeats):
        def sequential():  # one forward of the neutral texts per alpha, as the search ran before
            reference = token_logprobs(model, neutral)
            return [search_alpha_sequential(lambda alpha: kl_at(model, v, alpha, neutral, reference), KL_BUDGET)
                    for v in vectors]

        wall, cpu, sequential = timed(sequential)
        best["unbatched"] = min(best["unbatched"], (wall, cpu))
        wall, cpu, batched = timed(lambda: alphas_for_kl(model, vectors, KL_BUDGET, neutral))
        best["batched"] = min(best["batched"], (wall, cpu))
    same = sum(abs(a - b[0]) < 1e-9 for a, b in zip(sequential, batched))
    return {"settings": f"{len(vectors)} directions", "texts": len(neutral), **best,
            "max_difference": f"same alpha for {same}/{len(vectors)}"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["demo", "smollm2-135m-instruct"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results_steering_eval.md")
    args = parser.parse_args()
    header = (f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); torch {torch.__version__}; "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS')}; "
              f"load average at start {os.getloadavg()[0]:.1f}")
    print(header, flush=True)
    lines = []
    for name in args.models:
        try:
            model = steerlab.load_model(name)
        except (ValueError, OSError) as error:
            print(f"{name}: skipped ({error})")
            continue
        if name != "demo" and not CITIES.is_file():
            print(f"{name}: skipped (no {CITIES})")
            continue
        workload = demo_workload(model) if name == "demo" else smollm_workload(model)
        for threads in args.threads:
            torch.set_num_threads(threads)
            jobs = [("sweep", lambda: bench_sweep(model, workload, args.repeats))]
            if name == "demo":
                jobs.append(("kl search", lambda: bench_kl_search(model, args.repeats)))
            for job, run in jobs:
                row = run()
                (uw, uc), (bw, bc) = row["unbatched"], row["batched"]
                difference = row["max_difference"]
                difference = difference if isinstance(difference, str) else f"{difference:.1e}"
                line = (f"| {name} | {job} | {torch.get_num_threads()} | {row['settings']} | {row['texts']} | "
                        f"{uw:.1f} ({uc:.1f}) | {bw:.1f} ({bc:.1f}) | {uw / bw:.2f}x | {difference} |")
                print(line, f"load {os.getloadavg()[0]:.1f}", flush=True)
                lines.append(line)
        del model
    command = "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(["benchmarks/bench_steering_eval.py", *sys.argv[1:]])
    text = "\n".join([
        "# Steering evaluation: one forward per alpha vs many alphas per batched forward (issue 16, goal 3)", "",
        f"Command: `{command}`", "", header + f"; load average at the end {os.getloadavg()[0]:.1f}.", "",
        "Seconds wall (CPU seconds of this process), best of the repeats, both paths side by side in one process.",
        "The difference column: the largest gap between the two paths' rows (KL, relative perplexity, efficacy).", "",
        "| model | what | torch threads | settings | texts | unbatched s | batched s | speed-up | difference |",
        "|---|---|---|---|---|---|---|---|---|", *lines, ""])
    Path(args.out).write_text(text)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()

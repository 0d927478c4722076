"""Steered generation against unsteered on a real model with the KV cache (issue 16, goal 4).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_generation.py [--model smollm2-135m-instruct]
        [--prompts 4] [--new-tokens 32] [--rounds 7] [--threads 1] [--backend hf]

Every condition generates the same number of tokens (``min_new_tokens = max_new_tokens``,
greedy, transformers' own loop with its KV cache), in rounds in one process; each steered condition runs between two unsteered runs of the same
round (unsteered, steered, steered, unsteered); the ratio is steered tokens/s over those unsteered
runs' tokens/s, reported as the median over rounds, in wall-clock and in process CPU time (with one torch
thread the CPU-time ratio is what the steering costs, whatever else runs on the machine).

Conditions: ``add`` at the middle layer, ``clamp`` (probe probability := 0.9) at the
middle layer, ``add`` at six layers at once, and ``add`` at the middle layer with
``positions="generated"`` (the per-step position bookkeeping at work).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

PROMPTS = ["The capital of France is", "My favourite food is", "Water boils at",
           "The best way to learn a language is", "Once upon a time", "The stock market today"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(threads: int) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"CPU: {cpu_model()} ({os.cpu_count()} cores); torch {torch.__version__}, torch threads "
            f"{torch.get_num_threads()} (--threads {threads}), interop {torch.get_num_interop_threads()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load average {load:.1f}")


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--backend", default="hf")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import steerlab

    print(f"steerlab from {os.path.dirname(steerlab.__file__)}")
    print(machine_line(args.threads))
    model = steerlab.load_model(args.model, backend=args.backend)
    prompts = (PROMPTS * args.prompts)[: args.prompts]
    middle = model.n_layers // 2
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    direction = direction / direction.norm() * 4.0
    one = steerlab.SteeringVector(direction, layers=middle, model_name=model.name,
                                  probe_weight_norm=1.0, probe_intercept=0.0)
    six = steerlab.SteeringVector(direction, layers=tuple(range(middle - 3, middle + 3)), model_name=model.name)
    generate = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)

    def run(**steering):
        def fn() -> None:
            if not steering:
                model.generate(prompts, **generate)
                return
            with steerlab.steer(model, **steering):
                model.generate(prompts, **generate)
        return fn

    conditions = {
        "unsteered": run(),
        "add, 1 layer": run(vectors=one, alpha=1.0),
        "clamp, 1 layer": run(vectors=one, mode="clamp", target=0.9),
        "add, 6 layers": run(vectors=six, alpha=1.0),
        "add, 1 layer, positions='generated'": run(vectors=one, alpha=1.0, positions="generated"),
    }
    for fn in conditions.values():  # warm-up
        fn()
    # Each steered condition is timed against unsteered runs next to it, in the order unsteered,
    # steered, steered, unsteered (ABBA): a drift in machine speed during the round cancels, and
    # neither condition always runs first (a fixed order biased the ratio by up to 6%).
    wall: dict[str, list[float]] = {name: [] for name in conditions}
    cpu: dict[str, list[float]] = {name: [] for name in conditions}
    baseline_wall: dict[str, list[float]] = {name: [] for name in conditions}
    baseline_cpu: dict[str, list[float]] = {name: [] for name in conditions}
    steered = [name for name in conditions if name != "unsteered"]
    for round_number in range(args.rounds):
        for name in steered:
            for condition, walls, cpus in (("unsteered", baseline_wall, baseline_cpu), (name, wall, cpu),
                                           (name, wall, cpu), ("unsteered", baseline_wall, baseline_cpu)):
                seconds, cpu_seconds = timed(conditions[condition])
                walls[name].append(seconds)
                cpus[name].append(cpu_seconds)
        ratios = ", ".join(f"{name} {sum(baseline_cpu[name][-2:]) / sum(cpu[name][-2:]):.3f}x" for name in steered)
        print(f"round {round_number + 1}/{args.rounds} (CPU-time ratios): {ratios}", file=sys.stderr, flush=True)

    def median_ratio(baseline: list[float], times: list[float]) -> float:
        """Median over rounds of (the round's two unsteered runs) / (its two steered runs)."""
        return statistics.median(sum(baseline[i:i + 2]) / sum(times[i:i + 2]) for i in range(0, len(times), 2))

    tokens = args.prompts * args.new_tokens
    print(f"\n{args.model} ({args.backend}), {args.prompts} prompts x {args.new_tokens} new tokens, greedy, KV cache; "
          f"median over {args.rounds} rounds\n")
    print("| condition | tokens/s (wall) | steered/unsteered (wall) | steered/unsteered (CPU time) |")
    print("|---|---|---|---|")
    unsteered_walls = [t for name in steered for t in baseline_wall[name]]
    print(f"| unsteered | {tokens / statistics.median(unsteered_walls):.1f} | 1.000x | 1.000x |")
    for name in steered:
        rate = tokens / statistics.median(wall[name])
        print(f"| {name} | {rate:.1f} | {median_ratio(baseline_wall[name], wall[name]):.3f}x "
              f"| {median_ratio(baseline_cpu[name], cpu[name]):.3f}x |")
    print("\n" + machine_line(args.threads))


if __name__ == "__main__":
    main()

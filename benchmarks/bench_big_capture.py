"""Big captures streamed to disk on a real model: peak RSS of N texts against N/10 (issue 16, goal 5).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_big_capture.py [--model smollm2-135m-instruct]
        [--n 10000 100000] [--layers 0] [--site resid_post] [--batch-size 64] [--shard-size 2048] [--threads 1]
        [--out DIR] [--concurrent]

For each N, a fresh child process loads the model and runs
``steerlab.capture(model, texts, layers, position="last", out=DIR/N)``, streaming
safetensors shards to disk, then reports its own peak resident set size
(``getrusage(RUSAGE_SELF).ru_maxrss``, the kernel's high-water mark, so nothing between
samples is missed), its RSS after loading the model (before the capture), the wall-clock
and CPU seconds of the capture and its tokens/s. One process per N, so each peak is its
own; the goal compares the peaks (the model and torch are most of both).

Texts: deterministic synthetic sentences (subject, verb, object, place, and a number,
e.g. "The old farmer sold three apples near the river for 17 dollars."), 15 tokens on average,
the first N of one fixed sequence, so the smaller run's texts are the start of the
larger run's. Exactness beside the memory ratio: the parent reads the first shard of both
stores (the same texts in the same batches) and reports their max abs difference.

Keep the cost in mind: capture stops after the deepest requested site, so the cost is that
of the blocks up to it (no LM head). 100,000 texts are 1.54 M tokens: ``--layers 0`` (one
block) ran ~5,700 tokens per CPU-second on one core of the machine of results_big_capture.md,
~4.5 minutes of a whole core; ``--layers 0 4 8`` ~660 tokens per CPU-second, ~40 minutes.
``--site resid_pre --layers 0`` (the embeddings: no block runs) measures the memory path
alone (tokenisation, batching, shards, manifest, texts) in seconds of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generation import machine_line  # noqa: E402

SUBJECTS = ["The old farmer", "A young doctor", "My neighbour", "The small cat", "Our teacher", "The tall pilot",
            "A tired student", "The baker", "His sister", "The mayor", "A quiet child", "The new manager",
            "Her uncle", "The river guide", "A local artist", "The night nurse", "My best friend", "The captain",
            "A clever fox", "The shopkeeper"]
VERBS = ["sold", "bought", "painted", "found", "lost", "carried", "repaired", "hid", "borrowed", "cleaned",
         "wrapped", "counted", "dropped", "shared", "weighed", "ordered", "opened", "packed", "noticed", "kept"]
OBJECTS = ["three apples", "a red bicycle", "an old map", "the wooden chair", "a blue kettle", "two letters",
           "a broken clock", "the garden gate", "a silver ring", "some warm bread", "a paper kite", "the last ticket",
           "a heavy box", "four candles", "a green umbrella", "the small boat", "a jar of honey", "a wool scarf",
           "the brass key", "a box of nails"]
PLACES = ["near the river", "at the market", "in the morning", "behind the school", "after lunch", "in the rain",
          "at the station", "before dinner", "on the hill", "in the old town", "by the harbour", "at midnight"]


def make_texts(n: int) -> list[str]:
    """The first ``n`` of a fixed sequence of varied short sentences (96,000 frames x a number)."""
    texts = []
    for i in range(n):
        j = (i * 7919) % 96000  # a fixed permutation of the frames, so neighbours differ in every slot
        subject, rest = SUBJECTS[j % 20], j // 20
        verb, rest = VERBS[rest % 20], rest // 20
        thing, rest = OBJECTS[rest % 20], rest // 20
        place = PLACES[rest % 12]
        texts.append(f"{subject} {verb} {thing} {place} for {1 + (i * 31) % 97} dollars.")
    return texts


def child(args: argparse.Namespace) -> None:
    """One N in this process: load, capture to ``args.store``, print a JSON line with the figures."""
    torch.set_num_threads(args.threads)
    import steerlab
    from steerlab.models.tokenization import encode

    texts = make_texts(args.child)
    model = steerlab.load_model(args.model)
    rss_loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = time.perf_counter(), time.process_time()
    acts = steerlab.capture(model, texts, layers=args.layers, site=args.site, position="last", batch_size=args.batch_size,
                            out=args.store, shard_size=args.shard_size, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tokens = sum(len(row) for row in encode(model.tokenizer, texts, max_length=model.context_length))
    disk = sum(path.stat().st_size for path in Path(args.store).iterdir())
    print(json.dumps({"n": args.child, "rows": len(acts), "tokens": tokens, "wall_s": wall, "cpu_s": cpu,
                      "peak_rss_mb": peak_kb / 1024, "rss_after_load_mb": rss_loaded_kb / 1024,
                      "disk_mb": disk / 2**20, "n_layers": model.n_layers}), flush=True)


def first_shard_difference(store_a: Path, store_b: Path) -> tuple[float, int]:
    """Max abs difference over the rows both stores' first shards hold (the same texts, the same batches)."""
    from safetensors.torch import load_file

    def first(store: Path) -> torch.Tensor:
        manifest = json.loads((store / "manifest.json").read_text())
        entry = min(manifest["shards"], key=lambda shard: shard["text_start"])
        return load_file(str(store / entry["file"]))["activations"]

    a, b = first(store_a), first(store_b)
    rows = min(len(a), len(b))
    return float((a[:rows] - b[:rows]).abs().max()), rows


def finish(n: int, process: subprocess.Popen) -> dict:
    """Wait for one child; return its figures."""
    stdout, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"the capture of N={n} failed (exit status {process.returncode}); see its output above")
    result = json.loads(stdout.strip().splitlines()[-1])
    print(f"  N={n}: {result}  (load average {os.getloadavg()[0]:.1f})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--layers", type=int, nargs="+", default=[0])
    parser.add_argument("--site", default="resid_post")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="folder for the stores (default: a temporary one, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--concurrent", action="store_true", help="run the N's child processes at once")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    torch.set_num_threads(args.threads)
    print(machine_line(args.threads), flush=True)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="steerlab-big-capture-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        # One child process per N; with --concurrent they run at once (each peak RSS is still its own process's).
        children = []
        for n in args.n:
            command = [sys.executable, __file__, "--child", str(n), "--store", str(root / f"store-{n}"),
                       "--model", args.model, "--layers", *map(str, args.layers), "--site", args.site,
                       "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size),
                       "--threads", str(args.threads)]
            children.append((n, subprocess.Popen(command, stdout=subprocess.PIPE, text=True)))
            if not args.concurrent:
                results.append(finish(*children[-1]))
        if args.concurrent:
            results = [finish(n, process) for n, process in children]
        diff, rows = first_shard_difference(root / f"store-{args.n[0]}", root / f"store-{args.n[-1]}")
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    base = results[0]
    print(f"\n{args.model}, layers {args.layers} ({args.site}, position='last', early stop after layer "
          f"{max(args.layers)}), batch {args.batch_size}, shards of {args.shard_size} texts, "
          f"{args.threads} torch thread(s), one process per N\n")
    print("| texts | tokens | peak RSS MB | peak / smallest | RSS after model load MB | capture growth MB "
          "| on disk MB | capture s (wall) | CPU s | tokens/s (wall) | tokens/s (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['n']:,} | {r['tokens']:,} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / base['peak_rss_mb']:.3f}x "
              f"| {r['rss_after_load_mb']:.0f} | {r['peak_rss_mb'] - r['rss_after_load_mb']:.0f} | {r['disk_mb']:.0f} "
              f"| {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['tokens'] / r['wall_s']:.0f} | {r['tokens'] / r['cpu_s']:.0f} |")
    print(f"\nExactness: first shard ({rows} texts) of N={args.n[0]:,} vs N={args.n[-1]:,}: max abs diff {diff:.1e}")
    print(machine_line(args.threads))


if __name__ == "__main__":
    main()

"""Capture against a plain logits forward on the real models, every backend (issue 16, goal 1).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_capture_real.py [--models smollm2-135m-instruct gemma-3-270m]
        [--texts 64] [--batch-size 32] [--rounds 5] [--threads 1]

For each model, in one process and in rounds that alternate the conditions: a plain
transformers forward computing the logits (``hf_model(input_ids, attention_mask)``) over
the same length-sorted, right-padded batches that capture builds, then
``steerlab.capture(..., position="last")`` of every layer's ``resid_post`` and of the
first quarter of the layers, on the hf, transformer_lens (TransformerBridge) and nnsight
backends. Texts: the Geometry of Truth cities statements (``../shared/data/got_cities.csv``).
Each ratio is capture time over the plain forward's time in the same round, the median
over rounds, in wall-clock and in process CPU time (with one torch thread, CPU time is
what the work costs whatever else runs on the machine).

Exactness beside each ratio: the captured values against today's capture path, a full
``adapter.forward`` (logits computed) recording the same sites on the same batches: the
max abs difference, and the max over vectors of |diff| / max |h| of that vector.

Running this file with ``PYTHONPATH`` pointing at an older checkout measures that
checkout's capture (the "today" column of benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generation import machine_line, timed  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "got_cities.csv"
BACKENDS = ["hf", "transformer_lens", "nnsight"]


def statements(n: int) -> list[str]:
    with open(DATA, newline="") as handle:
        return [row["statement"] for row in csv.DictReader(handle)][:n]


def batches(model, texts: list[str], batch_size: int) -> tuple[list[int], list]:
    """capture's own batching: length-sorted (stable), right-padded, ``batch_size`` texts each."""
    from steerlab.models.tokenization import encode, pad

    ids = encode(model.tokenizer, texts, max_length=model.context_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return order, [pad([ids[i] for i in order[s:s + batch_size]], pad_id=model.pad_token_id, side="right")
                   for s in range(0, len(order), batch_size)]


def full_forward_reference(model, texts: list[str], layers: list[int], batch_size: int) -> torch.Tensor:
    """Today's capture path: full forwards (logits computed) recording resid_post at the last real token."""
    order, padded = batches(model, texts, batch_size)
    rows = []
    for batch in padded:
        seen: dict[int, torch.Tensor] = {}

        def keep(layer: int):
            return lambda activation: seen.__setitem__(layer, activation.detach().clone())

        with torch.no_grad():
            model.forward(batch, [(model.point("resid_post", layer), keep(layer)) for layer in layers])
        last = batch.attention_mask.sum(dim=1) - 1
        rows.append(torch.stack([seen[layer][torch.arange(len(last)), last] for layer in layers], dim=1))
    values = torch.cat(rows)
    restored = torch.empty_like(values)
    restored[torch.tensor(order)] = values
    return restored


def differences(got: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    diff = (got - expected).abs()
    scale = expected.abs().amax(dim=-1).clamp_min(1e-6)
    return diff.max().item(), (diff.amax(dim=-1) / scale).max().item()


def bench_model(name: str, texts: list[str], batch_size: int, rounds: int) -> list[str]:
    import steerlab

    hf = steerlab.load_model(name)
    adapters = {"hf": hf}
    for backend in BACKENDS[1:]:
        adapters[backend] = steerlab.load_model(hf.hf_model, tokenizer=hf.tokenizer, backend=backend)
    n = hf.n_layers
    layer_sets = {"every layer": list(range(n)), f"first quarter (0-{max(1, n // 4) - 1})": list(range(max(1, n // 4)))}
    _, padded = batches(hf, texts, batch_size)

    def plain() -> None:
        with torch.no_grad():
            for batch in padded:
                hf.hf_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    conditions = {("plain logits forward", "", ""): plain}
    for backend, adapter in adapters.items():
        for label, layers in layer_sets.items():
            conditions[(backend, label, "")] = (
                lambda adapter=adapter, layers=layers: steerlab.capture(
                    adapter, texts, layers=layers, position="last", batch_size=batch_size, progress=False))

    exact = {}
    for backend, adapter in adapters.items():
        for label, layers in layer_sets.items():
            got = steerlab.capture(adapter, texts, layers=layers, position="last", batch_size=batch_size,
                                   progress=False).values
            exact[backend, label] = differences(got, full_forward_reference(adapter, texts, layers, batch_size))

    for fn in conditions.values():  # warm-up
        fn()
    wall = {key: [] for key in conditions}
    cpu = {key: [] for key in conditions}
    loads = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for key, fn in conditions.items():
            seconds, cpu_seconds = timed(fn)
            wall[key].append(seconds)
            cpu[key].append(cpu_seconds)

    base = ("plain logits forward", "", "")
    lines = [f"\n### {name} ({n} layers, d={hf.d_model}), {len(texts)} texts, batch {batch_size}, "
             f"median over {rounds} rounds (load average during the rounds: {min(loads):.1f}-{max(loads):.1f})\n",
             f"plain logits forward: {statistics.median(wall[base]):.2f} s wall, {statistics.median(cpu[base]):.2f} s CPU\n",
             "| backend | layers | capture / plain (wall) | capture / plain (CPU time) | max abs diff vs full forward | max relative diff |",
             "|---|---|---|---|---|---|"]
    for key in conditions:
        if key == base:
            continue
        backend, label, _ = key
        wall_ratio = statistics.median(s / p for s, p in zip(wall[key], wall[base]))
        cpu_ratio = statistics.median(s / p for s, p in zip(cpu[key], cpu[base]))
        absolute, relative = exact[backend, label]
        lines.append(f"| {backend} | {label} | {wall_ratio:.2f}x | {cpu_ratio:.2f}x | {absolute:.1e} | {relative:.1e} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import steerlab

    print(f"steerlab from {Path(steerlab.__file__).parent}")
    print(machine_line(args.threads))
    texts = statements(args.texts)
    for name in args.models:
        for line in bench_model(name, texts, args.batch_size, args.rounds):
            print(line, flush=True)
    print("\n" + machine_line(args.threads))


if __name__ == "__main__":
    main()

"""Steered generation throughput against unsteered, per backend, side by side in one process.

    python benchmarks/bench_steering.py [--model demo] [--new-tokens 32] [--repeats 3]

Without --model, a random GPT-2 (6 layers, d=256) is built in a temp directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from bench_capture import make_model, make_texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import steerlab

    with tempfile.TemporaryDirectory() as directory:
        source = args.model
        if source is None:
            make_model(directory)
            source = directory
        print("| backend | unsteered tok/s | steered tok/s | ratio |\n|---|---|---|---|")
        for backend in ["hf", "transformer_lens", "nnsight"]:
            model = steerlab.load_model(source, backend=backend)
            prompts = make_texts(args.prompts)[: args.prompts] if args.model is None else ["the"] * args.prompts
            direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
            vector = steerlab.SteeringVector(direction, layers=model.n_layers // 2, model_name=model.name)
            kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)

            def unsteered() -> None:
                model.generate(prompts, **kwargs)

            def steered() -> None:
                with steerlab.steer(model, vector, alpha=1.0, positions="all"):
                    model.generate(prompts, **kwargs)

            unsteered(), steered()  # warm-up
            times: dict[str, list[float]] = {"unsteered": [], "steered": []}
            for _ in range(args.repeats):
                for name, fn in (("unsteered", unsteered), ("steered", steered)):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            tokens = args.prompts * args.new_tokens
            plain, steer_rate = tokens / min(times["unsteered"]), tokens / min(times["steered"])
            print(f"| {backend} | {plain:.0f} | {steer_rate:.0f} | {steer_rate / plain:.2f} |")


if __name__ == "__main__":
    main()

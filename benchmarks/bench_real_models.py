"""Cached load time of the named real models (run after `steerlab models pull all`).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_real_models.py

For each pulled model: the seconds `steerlab.load_model(name)` takes from steerlab's cache
(imports excluded: torch and transformers are imported first), and a greedy answer to a
capital-of-France prompt (SmolLM2's through its chat template), as a sanity check.
"""

from __future__ import annotations

import time

import torch
import transformers  # noqa: F401  (imported before timing)

import steerlab
from steerlab.models import registry

PROMPTS = {  # (prompt, through the chat template?)
    "smollm2-135m-instruct": ("What is the capital of France?", True),
    "gemma-3-270m": ("The capital of France is the city of", False),
}


def main() -> None:
    torch.set_num_threads(2)
    for name in registry.MODELS:
        if registry.cached_folder(name) is None:
            print(f"{name}: not pulled (run `{registry.get(name).pull_command}`)")
            continue
        started = time.perf_counter()
        model = steerlab.load_model(name)
        seconds = time.perf_counter() - started
        prompt, chat = PROMPTS[name]
        started = time.perf_counter()
        [answer] = model.generate([prompt], max_new_tokens=8, chat_template=chat)
        generate_seconds = time.perf_counter() - started
        print(f"{name}: cached load {seconds:.1f} s; greedy{' (chat template)' if chat else ''} "
              f"{prompt!r} -> {answer!r} ({generate_seconds:.1f} s for 8 tokens)")
        del model


if __name__ == "__main__":
    main()

"""SAE CE losses (clean, spliced, mean-ablated): three full forwards per batch (the reference, written out
here as steerlab computed them before) against `steerlab.sae.quality.ce_losses`, whose spliced and ablated
forwards start at the SAE's layer (`adapter.forward_from`). Side by side in one process, CPU seconds, median
of the rounds, one torch thread; the largest relative difference of the three losses beside each ratio.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_sae_ce.py

Cases: the demo model with its shipped TopK SAE (blocks.2.hook_resid_post, 400 held-out demo texts);
SmolLM2-135M-Instruct with a random TopK SAE at blocks.15.hook_resid_post (32 SST-2 sentences from
benchmarks/real_runs/neutral.txt; needs `steerlab models pull smollm2-135m-instruct`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import steerlab  # noqa: E402
from bench_raptor_speed import cpu_model  # noqa: E402
from steerlab.sae import demo_corpus, load_sae  # noqa: E402
from steerlab.sae.editing import sae_splice  # noqa: E402
from steerlab.sae.loading import check_sae  # noqa: E402
from steerlab.sae.quality import ce_losses  # noqa: E402
from steerlab.steering.metrics import mean_nll, token_logprobs  # noqa: E402


def full_forwards(model, sae, texts, mean):
    """The reference: clean, spliced and mean-ablated losses, each from full forwards of every text."""
    point = check_sae(sae, model)
    clean = mean_nll(model, texts, token_logprobs(model, texts))
    with sae_splice(model, sae):
        spliced = mean_nll(model, texts, token_logprobs(model, texts))

    def ablate(h):
        out = mean.to(h.dtype).expand_as(h).clone()
        out[:, 0] = h[:, 0]
        return out

    with model.hooks([(model.point(point.site, point.layer), ablate)]):
        ablated = mean_nll(model, texts, token_logprobs(model, texts))
    return clean, spliced, ablated


def bench(name, model, sae, texts, rounds=3):
    mean = torch.zeros(model.d_model)
    reference_seconds, seconds = [], []
    for _ in range(rounds):
        start = time.process_time()
        expected = full_forwards(model, sae, texts, mean)
        reference_seconds.append(time.process_time() - start)
        start = time.process_time()
        losses = ce_losses(model, sae, texts, site_mean=mean)
        seconds.append(time.process_time() - start)
    got = (losses["ce_clean"], losses["ce_spliced"], losses["ce_mean_ablated"])
    before, after = np.median(reference_seconds), np.median(seconds)
    print(f"{name}: {sae.cfg.metadata.hook_name}, {len(texts)} texts: full forwards {before:.2f} CPU-s, "
          f"from the SAE layer {after:.2f} CPU-s, {before / after:.2f}x; "
          f"max rel diff {max(abs(x - y) / abs(x) for x, y in zip(expected, got)):.1e}")


def main() -> None:
    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    demo = steerlab.load_model("demo")
    bench("demo", demo, load_sae("demo", model=demo), demo_corpus(400, seed=999))
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    smol = steerlab.load_model("smollm2-135m-instruct")
    torch.manual_seed(0)
    planted = TopKSAE(TopKSAEConfig(d_in=smol.d_model, d_sae=1024, k=16,
                                    metadata=SAEMetadata(hook_name="blocks.15.hook_resid_post")))
    neutral = Path(__file__).resolve().parent / "real_runs" / "neutral.txt"
    texts = [line.strip() for line in neutral.read_text().splitlines() if line.strip()][:32]
    bench("smollm2-135m-instruct", smol, planted, texts, rounds=2)


if __name__ == "__main__":
    main()

"""Issue 5's measurements on the demo model: truth and sentiment steering with controls.

    python benchmarks/steering_demo.py [--out benchmarks/results_steering_demo.json]

Protocol (probes fitted on TRAIN cities; alpha calibrated on half of the held-out cities,
numbers reported on the other half, split by city):
1. Capture the last token of each city statement at every layer.
2. Probe sweep (RaptorProbe and difference of means) and per-layer probes on TRAIN.
3. Vector = the probe's unit direction at layer L, injected at L's resid_post, for every L.
   (layer, alpha) = the smallest alpha (in units of L's median token norm) on a grid that
   flips >= 95% of the CALIBRATION false statements the model rejects to "true", with KL <= budget
   on neutral text and a same-norm random direction flipping <= 20% at that setting. A flip counts only statements whose unsteered verdict was on the other side.
4. On the TEST half: false -> "true" flip rate at +alpha, true -> "false" at
   -alpha, a same-norm random direction, KL and perplexity on neutral text.
5. The same vector steering only the statement's own tokens (not the "." right before the
   verdict), and on another domain (number comparisons).
6. Clamp to a probe probability of 0.9999 at every token: fraction reaching it.
7. Sentiment: a CAA vector from review pairs moves greedy completions of held-out review
   prompts, judged by the world's own adjective lexicon.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import steerlab
from steerlab.datasets import load, split_by_group
from steerlab.probes import DiffMeans, RaptorProbe, probe_sweep
from steerlab.steering import (SteeringVector, logprob_difference, random_control, steer,
                               word_rate)
from steerlab.steering.calibration import calibrate_truth_steering
from steerlab.steering.verdicts import judged_true, verdict_flips
from steerlab.world import templates

ALPHAS = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0]  # x the site's median token norm
TARGET = 0.95  # calibration flips: a margin over the 0.9 required on the reported half
CONTROL_MAX = 0.2  # the same-norm random direction may flip at most this share at the chosen setting
CROSS_DOMAIN_ALPHAS = (1.0, 1.5, 2.0, 2.5)
KL_BUDGET = 1.0  # nats, mean over every token of the neutral text, all of them steered


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results_steering_demo.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    model = steerlab.load_model("demo")
    train, held_out = load("demo/cities", split="train"), load("demo/cities", split="test")
    # Held-out cities, split by city: one half calibrates alpha, the other is reported. (The train
    # split's verdicts were memorised in training, so flipping them takes far more than held-out ones.)
    calibration = split_by_group(held_out, "train", test_share=0.5, seed=0)
    test = split_by_group(held_out, "test", test_share=0.5, seed=0)
    neutral = load("demo/topic", split="test").texts[:64]
    true_word, false_word = train.verdict_words
    results: dict = {"model": model.name, "n_layers": model.n_layers, "d_model": model.d_model}

    acts_train = steerlab.capture(model, train.texts, position="last", progress=False)
    acts_test = steerlab.capture(model, held_out.texts, position="last", progress=False)
    table = probe_sweep(acts_train, train.labels, methods=["raptor", "diff_means"], groups=train.groups,
                        stability_runs=0)
    best_layers = table.best_layers("accuracy")
    results["probe_best_layers"] = best_layers
    probes = {"raptor": RaptorProbe(Cs=100).fit(acts_train, train.labels, groups=train.groups),
              "diff_means": DiffMeans().fit(acts_train, train.labels)}
    results["probe_test_accuracy"] = {name: np.asarray(probe.score(acts_test.values.numpy(), held_out.labels)).tolist()
                                      for name, probe in probes.items()}

    results["truth"] = {}
    for name, probe in probes.items():
        steering = calibrate_truth_steering(model, probe, calibration, test, neutral, alphas=ALPHAS, target=TARGET,
                                            kl_budget=KL_BUDGET, control_max=CONTROL_MAX)
        if steering.vector is None:
            results["truth"][name] = {"chosen": None, "sweep": steering.sweep.to_records()}
            continue
        vector, layer, alpha = steering.vector, steering.results["layer"], steering.results["alpha_norm_units"]
        control = random_control(vector, seed=0)
        statement_tokens = min(len(model.tokenizer(t)["input_ids"]) for t in test.texts) - 1
        numbers = load("demo/larger_than", split="test")
        results["truth"][name] = {
            **steering.results,
            f"test_flip_false_to_true_statement_tokens_only_0_{statement_tokens}":
                verdict_flips(model, test, vector, alpha, 0, positions=(0, statement_tokens)),
            # the numbers verdict is more confident than held-out cities: report a range of alphas (norm units)
            "numbers_flip_false_to_true": {f"alpha={k:g}": verdict_flips(model, numbers, vector, k, 0)
                                           for k in CROSS_DOMAIN_ALPHAS},
            "numbers_control_flip_false_to_true": {f"alpha={k:g}": verdict_flips(model, numbers, control, k, 0)
                                                   for k in CROSS_DOMAIN_ALPHAS},
            "numbers_unsteered_false_judged_true": judged_true(model, numbers, 0),
            "sweep": steering.sweep.to_records(),
        }
        if name == "raptor":
            clamp_vector = SteeringVector.from_probe(probe, layer=layer)
            test_false = [p for p, y in zip(test.verdict_prompts, test.labels) if y == 0]
            with steer(model, clamp_vector, mode="clamp", target=0.9999) as stats:
                clamped = logprob_difference(model, test_false, true_word, false_word)
            results["truth"][name]["clamp"] = {
                "edited_tokens": stats.edited_tokens, "reached_target": stats.clamp_reached(0.9999, 1e-4),
                "flip_false_to_true": float((clamped > 0).float().mean())}

    # Sentiment: CAA over training review pairs, judged on held-out review prompts by the lexicon.
    sentiment = load("demo/sentiment", split="train")
    positive = [t for t, y in zip(sentiment.texts, sentiment.labels) if y == 1][:200]
    negative = [t for t, y in zip(sentiment.texts, sentiment.labels) if y == 0][:200]
    layer = model.n_layers // 2
    caa = SteeringVector.from_contrast_pairs(model, positive, negative, layer=layer)
    prompts = [f"my friend said the {thing} was" for thing in templates.REVIEW_THINGS]
    before = model.generate(prompts, max_new_tokens=3)
    rows = {}
    for alpha in (-2.0, 2.0):
        with steer(model, caa, alpha=alpha, positions="all"):
            rows[alpha] = model.generate(prompts, max_new_tokens=3)
    results["sentiment"] = {
        "layer": layer, "method": "CAA", "pairs": len(positive),
        "positive_rate_unsteered": word_rate(before, templates.POSITIVE_ADJECTIVES),
        "positive_rate_plus": word_rate(rows[2.0], templates.POSITIVE_ADJECTIVES),
        "negative_rate_unsteered": word_rate(before, templates.NEGATIVE_ADJECTIVES),
        "negative_rate_minus": word_rate(rows[-2.0], templates.NEGATIVE_ADJECTIVES),
        "examples": [{"prompt": p, "unsteered": b, "plus": a, "minus": m}
                     for p, b, a, m in list(zip(prompts, before, rows[2.0], rows[-2.0]))[:6]],
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=1)
    write_markdown(results, args.out.removesuffix(".json") + ".md")
    print(json.dumps({k: v for k, v in results.items() if k != "truth"}, indent=1))
    for name, row in results["truth"].items():
        print(name, {k: v for k, v in row.items() if k != "sweep"})


def pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def write_markdown(results: dict, path: str) -> None:
    """The human-readable summary of a run (benchmarks/results_steering_demo.md)."""
    r, m, s = results["truth"]["raptor"], results["truth"]["diff_means"], results["sentiment"]
    tokens_key = next(k for k in m if k.startswith("test_flip_false_to_true_statement_tokens_only"))
    rows = [
        ("chosen layer, alpha (x the layer's median token norm)", f"{r['layer']}, {r['alpha_norm_units']}",
         f"{m['layer']}, {m['alpha_norm_units']}"),
        ('held-out false -> "true" (+alpha)', pct(r["test_flip_false_to_true"]), pct(m["test_flip_false_to_true"])),
        ('held-out true -> "false" (-alpha)', pct(r["test_flip_true_to_false"]), pct(m["test_flip_true_to_false"])),
        ("random direction, same norm: false -> true / true -> false",
         f"{pct(r['test_control_flip_false_to_true'])} / {pct(r['test_control_flip_true_to_false'])}",
         f"{pct(m['test_control_flip_false_to_true'])} / {pct(m['test_control_flip_true_to_false'])}"),
        ("KL on neutral text (nats/token, every token steered)", f"{r['kl_neutral']:.2f}", f"{m['kl_neutral']:.2f}"),
        (f"perplexity on neutral text (unsteered {r['perplexity_unsteered']:.2f})", f"{r['perplexity_neutral']:.2f}",
         f"{m['perplexity_neutral']:.2f}"),
        ('steering only the statement\'s tokens (not the "." before the verdict), false -> "true"',
         pct(r[tokens_key]), pct(m[tokens_key])),
        ("cities direction on number comparisons, alpha = " + " / ".join(k.split("=")[1] for k in m["numbers_flip_false_to_true"]),
         " / ".join(pct(v) for v in r["numbers_flip_false_to_true"].values()),
         " / ".join(pct(v) for v in m["numbers_flip_false_to_true"].values())),
        ("random direction on number comparisons, same alphas",
         " / ".join(pct(v) for v in r["numbers_control_flip_false_to_true"].values()),
         " / ".join(pct(v) for v in m["numbers_control_flip_false_to_true"].values())),
    ]
    lines = ["# Steering on the demo model (issue 5)", "",
             "`HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/steering_demo.py` writes this file and",
             "`results_steering_demo.json` (every sweep row). Protocol: the script's docstring. A *flip* counts only",
             "statements whose unsteered verdict was on the other side.", "",
             "| | RaptorProbe | difference of means |", "|---|---|---|",
             *[f"| {a} | {b} | {c} |" for a, b, c in rows], ""]
    if "clamp" in r:
        lines += [f'`mode="clamp"`, RaptorProbe at layer {r["layer"]}, p* = 0.9999, every token of the held-out false '
                  f'verdict prompts: {r["clamp"]["edited_tokens"]} tokens edited, {pct(r["clamp"]["reached_target"])} '
                  f'at the target probability (tolerance 1e-4); {pct(r["clamp"]["flip_false_to_true"])} judged true.', ""]
    lines += [f"## Sentiment (CAA, {s['pairs']} review pairs, layer {s['layer']}, alpha = +-2)", "",
              "Greedy completions of the held-out template `my friend said the {thing} was`, scored by the world's",
              "adjective lexicon (share of generated words; each completion is `adjective .`, so 50% = all of them):", "",
              "| | positive adjectives | negative adjectives |", "|---|---|---|",
              f"| unsteered | {pct(s['positive_rate_unsteered'])} | {pct(s['negative_rate_unsteered'])} |",
              f"| +alpha | {pct(s['positive_rate_plus'])} | |", f"| -alpha | | {pct(s['negative_rate_minus'])} |", "",
              "| prompt | unsteered | +alpha | -alpha |", "|---|---|---|---|",
              *[f"| {e['prompt']} | {e['unsteered']} | {e['plus']} | {e['minus']} |" for e in s["examples"]]]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

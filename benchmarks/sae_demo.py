"""Issue 8's measurements: the demo model's concepts through SAE features (sae-lens).

    OMP_NUM_THREADS=1 python benchmarks/sae_demo.py [--out benchmarks/results_sae.json]

Writes ``results_sae.json`` and ``results_sae.md`` next to ``--out``:

1. Quality of every SAE in ``assets/demo-sae`` on 500 held-out corpus lines (seed 999):
   explained variance, L0, dead latents, CE loss clean / spliced / mean-ablated.
2. For each SAE and each concept (truth = demo/cities, sentiment = demo/sentiment):
   detection AUROC on the held-out split and steering efficacy at matched KL
   (``steerlab.sae.compare.KL_BUDGET`` = 0.1 nats/token on neutral topic sentences, every
   token but the first steered) for RaptorProbe, difference of means, the best-aligned /
   best-AUROC / best-output-score SAE feature and a random direction oriented on train
   (:func:`steerlab.sae.compare_methods`).
3. k-sparse probe curves (k = 1..64, latents chosen by mean difference on train) against
   RaptorProbe on raw activations, the k chosen by 5-fold cross-validation on train
   (:func:`steerlab.sae.feature_probes.choose_k`), and how much of the diff-means direction
   the k best-aligned decoder rows reconstruct.
4. World variables: the best feature per country / sentiment / topic / truth value
   (in-sample AUROC: chosen and scored on the same texts).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_sae.json")))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import steerlab
    from steerlab.datasets import load
    from steerlab.sae import (compare_methods, demo_corpus, k_sparse_curve, load_sae, reconstruction_curve,
                              sae_quality, sentiment_concept, shipped_demo_saes, truth_concept, world_variable_table)
    from steerlab.sae.compare import KL_BUDGET, detect_vs_steer_summary
    from steerlab.sae.feature_probes import choose_k
    from steerlab.sae.world_features import summarize

    started = time.perf_counter()
    model = steerlab.load_model("demo")
    neutral = load("demo/topic", split="test").texts[:64]
    eval_texts = demo_corpus(500, seed=999)
    results: dict = {"kl_budget": KL_BUDGET, "saes": {}}
    for name in shipped_demo_saes():
        sae = load_sae(f"demo/{name}", model=model)
        entry = {"hook_name": sae.cfg.metadata.hook_name, "d_sae": sae.cfg.d_sae,
                 "quality": sae_quality(model, sae, eval_texts), "concepts": {}}
        for concept in (truth_concept(model), sentiment_concept(model)):
            result = compare_methods(model, sae, concept, neutral, kl_budget=KL_BUDGET)
            features = result.pop("features")
            result["k_sparse"] = k_sparse_curve(features["z_train"], concept.train.labels, features["z_test"],
                                                concept.test.labels)
            result["k_sparse_chosen"] = choose_k(features["z_train"], concept.train.labels, groups=concept.train.groups)
            result["detect_vs_steer"] = detect_vs_steer_summary(result)
            result["reconstruction_diff_means"] = reconstruction_curve(sae, features["diff_means"].coef_)
            result["reconstruction_raptor"] = reconstruction_curve(sae, features["raptor"].coef_)
            entry["concepts"][concept.name] = result
        rows = world_variable_table(model, sae)
        entry["world_variables"] = {"summary": summarize(rows), "rows": rows}
        results["saes"][name] = entry
        print(f"{name}: done at {time.perf_counter() - started:.0f} s", flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.write_text(json.dumps(results, indent=1, default=float))
    out.with_suffix(".md").write_text(render(results))
    print(out.with_suffix(".md").read_text())


def _f(value: float) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render(results: dict) -> str:
    lines = ["# SAE features vs supervised directions on the demo model (issue 8)", "",
             "Produced by `OMP_NUM_THREADS=1 python benchmarks/sae_demo.py` "
             f"({results['seconds']} s on one CPU thread). Steering is compared at matched KL = "
             f"{results['kl_budget']} nats/token on neutral text; every direction is added at every token "
             "but the first (the attention sink) at the SAE's site.", "",
             "Reading the tables:", "",
             "- efficacy counts only prompts the unsteered model gets the other way (false statements it rejects; "
             "negative-context review prompts where it prefers a negative adjective), so 'unsteered' is 0 by "
             "construction;",
             "- detection AUROC of an SAE feature is its own activation on the held-out split; 0.500 means it does "
             "not fire there;",
             "- k-sparse accuracy can sit near 0.5 while AUROC is high: the intercept fitted on train cities (whose "
             "labels the model memorised) does not transfer to held-out ones, the ranking does;",
             "- the random direction's sign is set on the train split (flipped if its train AUROC is below 0.5);",
             "- a KL-matched column of 'NO' means the alpha search could not bring KL within 20% of the budget: "
             "that row's efficacy is not comparable;",
             "- the k-sparse 'chosen k' is picked by 5-fold cross-validation on the train split; the other columns "
             "are the whole held-out curve, not a selection;",
             "- world-variable AUROCs are in-sample (the best of d_sae latents chosen and scored on the same texts) "
             "and therefore optimistic;",
             "- CE recovered is against mean ablation of the site (sae-lens' CE loss score uses zero ablation).",
             "", "Which method steers best, and does it detect? (computed from the tables below)", "",
             *[f"- {name}, {result['detect_vs_steer']}" for name, entry in results["saes"].items()
               for result in entry["concepts"].values()],
             "", "## Quality (500 held-out corpus lines)", "",
             "| SAE | explained variance | L0 | dead | CE clean | CE spliced | CE mean-ablated | CE recovered |",
             "|---|---|---|---|---|---|---|---|"]
    for name, entry in results["saes"].items():
        q = entry["quality"]
        lines.append(f"| {name} | {_f(q['explained_variance'])} | {q['l0']:.1f} | {_f(q['dead_fraction'])} | "
                     f"{_f(q['ce_clean'])} | {_f(q['ce_spliced'])} | {_f(q['ce_mean_ablated'])} | "
                     f"{_f(q['ce_loss_recovered'])} |")
    for name, entry in results["saes"].items():
        lines += ["", f"## {name}", ""]
        for concept, result in entry["concepts"].items():
            lines += [f"### {concept}: {result['efficacy_name']} (unsteered {_f(result['baseline_efficacy'])})", "",
                      "| method | feature | held-out detection AUROC | cos with diff-means | alpha (x median norm) | KL | KL matched | efficacy |",
                      "|---|---|---|---|---|---|---|---|"]
            for row in result["methods"]:
                feature = "" if row["feature"] is None else row["feature"]
                lines.append(f"| {row['method']} | {feature} | {_f(row['detection_auroc'])} | "
                             f"{_f(row['cosine_with_diff_means'])} | {row['alpha']:.3f} | {row['kl']:.3f} | "
                             f"{'yes' if row['matched'] else 'NO'} | {_f(row['efficacy'])} |")
            raptor = next(r["detection_auroc"] for r in result["methods"] if r["method"] == "raptor")
            lines += ["", f"k-sparse probes on latents (held-out AUROC; RaptorProbe on raw activations: {_f(raptor)}):", "",
                      "| k | " + " | ".join(str(r["k"]) for r in result["k_sparse"]) + " |",
                      "|---|" + "---|" * len(result["k_sparse"]),
                      "| AUROC | " + " | ".join(_f(r["auroc"]) for r in result["k_sparse"]) + " |",
                      "| accuracy | " + " | ".join(_f(r["accuracy"]) for r in result["k_sparse"]) + " |",
                      "| R^2 of diff-means from k rows | " + " | ".join(_f(r["r2"]) for r in result["reconstruction_diff_means"]) + " |",
                      "| R^2 of RaptorProbe from k rows | " + " | ".join(_f(r["r2"]) for r in result["reconstruction_raptor"]) + " |",
                      "", _chosen_k_line(result), ""]
        lines += ["### World variables (best feature per value, one-vs-rest in-sample AUROC)", "",
                  "| variable | values | values with in-sample AUROC >= 0.9 | distinct best features | "
                  "mean best in-sample AUROC |",
                  "|---|---|---|---|---|"]
        for row in entry["world_variables"]["summary"]:
            lines.append(f"| {row['variable']} | {row['values']} | {row['values with in-sample AUROC >= 0.9']} | "
                         f"{row['distinct best features']} | {_f(row['mean best in-sample AUROC'])} |")
    return "\n".join(lines) + "\n"


def _chosen_k_line(result: dict) -> str:
    """The k picked by cross-validation on train, with its held-out AUROC from the curve, flagged when they disagree."""
    from steerlab.sae.feature_probes import cv_held_out_flag

    chosen = result["k_sparse_chosen"]
    held_out = next(r for r in result["k_sparse"] if r["k"] == chosen["k"])
    flag = cv_held_out_flag(chosen["k"], chosen["cv_auroc"], held_out["auroc"])
    return (f"Chosen k = {chosen['k']} ({chosen['folds']}-fold cross-validation on train, CV AUROC "
            f"{_f(chosen['cv_auroc'])}): held-out AUROC {_f(held_out['auroc'])}"
            + (f". **FLAG: {flag}**" if flag else "; the two agree within 0.05."))


if __name__ == "__main__":
    main()

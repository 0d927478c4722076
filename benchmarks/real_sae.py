"""SAE features vs supervised directions on a real model (issue 15): SmolLM2-135M-Instruct, layer 15.

    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/real_sae.py

Writes ``benchmarks/results_real_sae.md`` and ``benchmarks/results_real_sae.json``. The SAE is the
one shipped in ``assets/smollm2-sae`` (``load_sae("smollm2-135m-instruct", model=model)``; trained
by ``benchmarks/train_real_sae.py``, its card holds the command). Two real concepts:

* truth: the project's ``en/cities`` statements (Geometry of Truth recipe; split by city, 30% of
  the cities held out). Probes read the statement's last token. Steering efficacy: SmolLM2
  answers a chat question ("Is the following statement true or false?", answer opened with
  "This statement is") with " false" for nearly every statement, true or not; the efficacy is the
  share of held-out false statements whose verdict flips to " true".
* sentiment, as "negative sentiment" (label 1 = a negative review): SST-2 reviews
  (``../shared/data/sst2_train.csv``; a balanced random train / held-out split). SmolLM2 leans
  positive: after a review and " In short, the movie is" it prefers a positive adjective to a
  negative one for every positive review and most negative ones, so the measurable push is toward
  negative. Steering efficacy: the share of held-out positive reviews whose continuation flips to
  the negative adjectives (" bad", " terrible"... against " great", " good"...).

For each concept (``steerlab.sae.compare.compare_methods``): alignment of the diff-means and
RaptorProbe directions with the decoder rows, k-sparse probes on the latents (k chosen by
grouped CV on train; held-out beside CV, flagged when they disagree), input and output scores
(Arad et al., "SAEs Are Good for Steering - If You Select the Right Features"; output scores on
a pool of candidate features, a forward per feature and prompt being too dear for all 2,304),
and the AxBench-style table (Wu et al., "AxBench"): held-out detection AUROC and steering
efficacy at KL = 0.1 nats/token on neutral text for difference of means, RaptorProbe, the best
input-score feature, the best output-score feature, the decoder row best aligned with
diff-means, a random direction, and beside each a same-norm random control at the same alpha.
Every direction is added at every token but the first (the attention sink), scaled in units of
the median token norm at the site. The feature views of the chosen features (top contexts,
logit lens) go in the results too.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_real_sae import CHAT_TEMPLATES, SST2, TOPICS, TRUTH_QUESTION, chat_text  # noqa: E402

MODEL = "smollm2-135m-instruct"
HERE = Path(__file__).resolve().parent
METHODS = ("diff_means", "raptor", "sae_input", "sae_output", "sae_aligned", "random")
OUTPUT_CANDIDATES = 24  # per ranking (train AUROC, input score, cosine with diff-means) plus as many random live ones
TRUTH_PREFIX = "This statement is"
POSITIVE = (" great", " good", " wonderful", " excellent", " amazing", " fantastic", " brilliant", " enjoyable")
NEGATIVE = (" bad", " terrible", " awful", " boring", " horrible", " disappointing", " dull", " poor")
SENTIMENT_SUFFIX = " In short, the movie is"
SCORE_PROMPTS = ("The movie was", "Overall, the film was", "I thought the acting was", "The story is",
                 "This book is", "The food at this restaurant was", "My day was", "The concert was",
                 "The ending of the film was", "Honestly, the show was", "The weather today is", "The hotel was")
N_EFFICACY = 48  # prompts per efficacy
SST2_TRAIN, SST2_TEST = 600, 300
PAPERS = {"arad_output_vs_input": "2-3x", "axbench_detection_diffmean": 0.942, "axbench_detection_sae": 0.695}


def truth_concept(model, smoke: bool = False):
    """en/cities: train/test by city; efficacy = false statements flipped to " true" under the chat readout."""
    from steerlab.datasets import load
    from steerlab.sae.concepts import Concept
    from steerlab.steering.evaluation import flip_rate

    train, test = load("en/cities", split="train"), load("en/cities", split="test")
    if smoke:
        train, test = train.subset(range(0, len(train), 7)), test.subset(range(0, len(test), 5))  # odd: both labels
    readout = lambda statement: chat_text(TRUTH_QUESTION.format(statement=statement), TRUTH_PREFIX)  # noqa: E731
    false = [readout(t) for t, y in zip(test.texts, test.labels) if y == 0][:8 if smoke else N_EFFICACY]
    rng = np.random.default_rng(0)
    score = [readout(train.texts[i]) for i in rng.choice(len(train.texts), 12, replace=False)]
    return Concept("truth", train, test, flip_rate(model, false, " true", " false", toward_positive=True),
                   "false->true verdict flips (held-out cities, chat readout)", score, (" true",), (" false",))


def sst2_splits(seed: int = 0, n_train: int = SST2_TRAIN, n_test: int = SST2_TEST):
    """Balanced random train / test ConceptDatasets of SST-2, label 1 = NEGATIVE (each review its own group)."""
    import pandas as pd

    from steerlab.datasets import ConceptDataset

    frame = pd.read_csv(SST2)
    rng = np.random.default_rng(seed)
    parts = {}
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(frame["label"].to_numpy() == label))
        parts[label] = (rows[:n_train // 2], rows[n_train // 2:(n_train + n_test) // 2])

    def dataset(split: str, index: int):
        rows = np.concatenate([parts[0][index], parts[1][index]])
        texts = frame["text"].to_numpy()[rows].tolist()
        negative = 1 - frame["label"].to_numpy()[rows].astype(np.int64)
        return ConceptDataset("sst2 (label 1 = negative)", texts, negative, "sentiment", [f"review-{r}" for r in rows],
                              split=split)

    return dataset("train", 0), dataset("test", 1)


def sentiment_concept(model, smoke: bool = False):
    """Negative sentiment on SST-2; efficacy = held-out positive reviews + " In short, the movie is" flipped to a
    negative adjective."""
    from steerlab.sae.concepts import Concept
    from steerlab.steering.evaluation import word_set_flip_rate

    train, test = sst2_splits(n_train=80, n_test=40) if smoke else sst2_splits()
    positives = [t for t, y in zip(test.texts, test.labels) if y == 0][:8 if smoke else N_EFFICACY]
    prompts = [t + SENTIMENT_SUFFIX for t in positives]
    return Concept("negative sentiment", train, test, word_set_flip_rate(model, prompts, NEGATIVE, POSITIVE),
                   "positive->negative adjective flips (held-out positive reviews)", SCORE_PROMPTS, NEGATIVE, POSITIVE)


def neutral_texts() -> list[str]:
    """16 chat requests on topics unrelated to both concepts (KL is measured on them)."""
    rng = np.random.default_rng(1)
    topics = [TOPICS[i] for i in rng.choice(len(TOPICS), 16, replace=False)]
    return [chat_text(CHAT_TEMPLATES[i % 4].format(topic=topic)) for i, topic in enumerate(topics)]


def concept_report(model, sae, result: dict) -> dict:
    """Alignment, k-sparse curve and chosen k, input/output scores and the feature table of one comparison."""
    from scipy.stats import spearmanr

    from steerlab.sae.alignment import decoder_cosines, reconstruction_curve, top_aligned
    from steerlab.sae.feature_probes import chosen_k_held_out, k_sparse_curve

    features = result.pop("features")
    directions = {"diff-means": features["diff_means"].coef_, "RaptorProbe": features["raptor"].coef_}
    alignment = {name: {"top": [{"feature": int(f), "cosine": float(c)} for f, c in
                                zip(*top_aligned(sae, d, k=5).values())],
                        "reconstruction": reconstruction_curve(sae, d)} for name, d in directions.items()}
    curve = k_sparse_curve(features["z_train"], features["train_labels"], features["z_test"], features["test_labels"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        chosen = chosen_k_held_out(features["z_train"], features["train_labels"], features["z_test"],
                                   features["test_labels"], groups=features["train_groups"])
    pool = features["output_pool"]
    inputs, outputs = features["input_score"][pool], features["output_score"][pool]
    keep = np.isfinite(inputs) & np.isfinite(outputs)
    rows = {r["method"]: r for r in result["methods"]}
    table = []
    for method in ("sae_input", "sae_output", "sae_aligned"):
        f = rows[method]["feature"]
        table.append({"selected by": method, "feature": f, "input score": float(features["input_score"][f]),
                      "output score": float(features["output_score"][f]),
                      "train AUROC": float(features["train_auroc"][f]), "held-out AUROC": float(features["test_auroc"][f]),
                      "cos with diff-means": float(features["cosine_diff_means"][f])})
    live = features["live"]
    best_auroc = int(np.argmax(np.where(live, features["train_auroc"], -np.inf)))
    return {**{k: v for k, v in result.items() if k != "methods"}, "methods": result["methods"],
            "alignment": alignment, "k_sparse": curve, "k_sparse_chosen": chosen, "flag_warned": bool(caught),
            "features": table, "live_features": int(live.sum()), "output_pool": len(pool),
            "input_output_spearman": float(spearmanr(inputs[keep], outputs[keep]).statistic),
            "best_train_auroc_feature": {"feature": best_auroc, "train_auroc": float(features["train_auroc"][best_auroc]),
                                         "test_auroc": float(features["test_auroc"][best_auroc])},
            "cosines_of_selected": {m: float(decoder_cosines(sae, directions["diff-means"])[rows[m]["feature"]])
                                    for m in ("sae_input", "sae_output")}}


def feature_summaries(model, sae, concept, result: dict) -> list[dict]:
    """The feature views of the input- and output-selected features (on the concept's train texts)."""
    from steerlab.sae import feature_view

    summaries = []
    for row in result["methods"]:
        if row["method"] in ("sae_input", "sae_output"):
            view = feature_view(model, sae, row["feature"], concept.train.texts[:300], top=5)
            summaries.append({"method": row["method"], "feature": row["feature"], "frequency": view.frequency,
                              "contexts": ["".join(c["tokens"]).replace("\n", " ") + f"  [peak {c['peak_token']!r} "
                                           f"{c['activation']:.1f}]" for c in view.contexts[:3]],
                              "promoted": [t for t, _ in view.promoted[:8]],
                              "suppressed": [t for t, _ in view.suppressed[:8]]})
    return summaries


def quality_check(model, sae, texts: list[str]) -> dict:
    """EV on a few held-out-style texts with and without the first token (the skip_first default)."""
    from steerlab.sae.activations import site_activations
    from steerlab.sae.quality import reconstruction_metrics

    return {"after_first": reconstruction_metrics(sae, site_activations(model, sae, texts, position="all")),
            "with_first": reconstruction_metrics(sae, site_activations(model, sae, texts, position="all",
                                                                       skip_first=False))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sae", default=MODEL, help="the SAE (default: the one shipped for SmolLM2)")
    parser.add_argument("--out", type=Path, default=HERE / "results_real_sae.md")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a few texts per concept: checks the script runs (minutes)")
    args = parser.parse_args(argv)
    import steerlab
    from steerlab.sae import load_sae
    from steerlab.sae.compare import compare_methods

    torch.set_num_threads(args.threads)
    timings, started = {}, time.perf_counter()
    model = steerlab.load_model(MODEL)
    sae = load_sae(args.sae, model=model)
    timings["load"] = time.perf_counter() - started
    results = {"sae": {"hook_name": sae.cfg.metadata.hook_name, "d_sae": sae.cfg.d_sae, "card": _card(args.sae)}}
    step = time.perf_counter()
    truth, sentiment = truth_concept(model, args.smoke), sentiment_concept(model, args.smoke)
    results["quality_check"] = quality_check(model, sae, sentiment.test.texts[:20 if args.smoke else 100])
    timings["concepts and quality check"] = time.perf_counter() - step
    neutral = neutral_texts()
    results["concepts"] = {}
    for concept in (truth, sentiment):
        step = time.perf_counter()
        print(f"{concept.name}: compare_methods ...", flush=True)
        result = compare_methods(model, sae, concept, neutral[:4] if args.smoke else neutral, methods=METHODS,
                                 output_candidates=3 if args.smoke else OUTPUT_CANDIDATES)
        report = concept_report(model, sae, result)
        report["feature_views"] = feature_summaries(model, sae, concept, report)
        report["candidates"] = int(concept.efficacy.candidates.sum())
        report["efficacy_prompts"] = len(concept.efficacy.prompts)
        results["concepts"][concept.name] = report
        timings[concept.name] = time.perf_counter() - step
        print(f"{concept.name}: {timings[concept.name]:.0f} s", flush=True)
    timings["total"] = time.perf_counter() - started
    results["timings"] = {k: round(v, 1) for k, v in timings.items()}
    results["machine"] = {"cpu": _cpu(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "python": platform.python_version()}
    command = "OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/real_sae.py" + \
        "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=_jsonable))
    args.out.write_text(render(results, command))
    print(f"-> {args.out}")


def _card(source: str) -> dict:
    from steerlab.sae.loading import SHIPPED_MODEL_SAES, shipped_model_sae_path

    path = shipped_model_sae_path(source) if source in SHIPPED_MODEL_SAES else Path(source)
    return json.loads((path / "card.json").read_text()) if (path / "card.json").is_file() else {}


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def render(results: dict, command: str) -> str:
    """The markdown page: every number comes from ``results``."""
    card, check = results["sae"]["card"], results["quality_check"]
    quality = card.get("quality_heldout", {})
    lines = ["# SAE features vs supervised directions on SmolLM2-135M-Instruct (issue 15)", "",
             f"Produced by `{command}` ({results['timings']['total'] / 60:.1f} min; {results['machine']['cpu']}, "
             f"{results['machine']['torch_threads']} torch threads, torch {results['machine']['torch']}). "
             f"Timings (s): {', '.join(f'{k} {v}' for k, v in results['timings'].items())}.", ""]
    lines += _quality_lines(results["sae"], quality, check)
    for name, concept in results["concepts"].items():
        lines += _concept_lines(name, concept)
    lines += _paper_lines(results["concepts"])
    return "\n".join(lines) + "\n"


def _quality_lines(sae: dict, quality: dict, check: dict) -> list[str]:
    lines = [f"## The SAE: {sae['hook_name']}, {sae['d_sae']} latents (TopK, k = {sae['card'].get('k')})", ""]
    if quality:
        after, typical, every = (quality["after_first_token"], quality["after_first_token_without_massive"],
                                 quality["every_token_including_first"])
        ce = quality["ce"]
        lines += [f"Trained by `{sae['card']['command']}` ({sae['card']['training']['rows']:,} token rows, "
                  f"{sae['card']['training']['epochs']} epochs). Held-out text ({after['n_tokens']:,} tokens after "
                  "the first of each text; the card has the per-source numbers):", "",
                  "| tokens | explained variance | L0 | dead | dense (>10%) |", "|---|---|---|---|---|",
                  f"| after the first | {_f(after['explained_variance'])} | {after['l0']:.1f} | "
                  f"{_f(after['dead_fraction'])} | {_f(after['dense_fraction'])} |",
                  f"| after the first, massive-norm tokens left out | {_f(typical['explained_variance'])} | "
                  f"{typical['l0']:.1f} | {_f(typical['dead_fraction'])} | {_f(typical['dense_fraction'])} |",
                  f"| every token, the first included | {_f(every['explained_variance'])} | {every['l0']:.1f} | "
                  f"{_f(every['dead_fraction'])} | {_f(every['dense_fraction'])} |", "",
                  f"CE loss on {ce['texts']} held-out texts: clean {ce['ce_clean']:.3f}, SAE spliced in "
                  f"{ce['ce_spliced']:.3f} (+{ce['ce_increase']:.3f} nats), site mean-ablated "
                  f"{ce['ce_mean_ablated']:.3f}: {ce['ce_loss_recovered']:.1%} of the loss recovered.", ""]
    lines += [f"Re-measured here on 100 held-out SST-2 reviews: explained variance {_f(check['after_first']['explained_variance'])} "
              f"after the first token (the default, `skip_first=True`) against "
              f"{_f(check['with_first']['explained_variance'])} with it: the attention sink alone dominates the variance.", ""]
    return lines


def _concept_lines(name: str, c: dict) -> list[str]:
    rows = c["methods"]
    lines = [f"## {name}: {c['efficacy_name']}", "",
             f"Unsteered: {c['candidates']} of {c['efficacy_prompts']} efficacy prompts lean the other way (only those "
             f"count; unsteered efficacy {_f(c['baseline_efficacy'], 2)}). Steering at KL = {c['kl_budget']} nats/token "
             f"on 16 neutral chat requests; alpha is in units of the median token norm at the site "
             f"({c['median_norm']:.0f}). Live features (firing on the concept's train texts): {c['live_features']}; "
             f"output scores measured on a pool of {c['output_pool']}.", "",
             "| method | feature | held-out detection AUROC | cos with diff-means | alpha | KL | KL matched | efficacy | "
             "same-norm random at that alpha |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {'' if r['feature'] is None else r['feature']} | {_f(r['detection_auroc'])} | "
                     f"{_f(r['cosine_with_diff_means'])} | {r['alpha']:.3g} | {_f(r['kl'])} | "
                     f"{'yes' if r['matched'] else 'NO'} | {_f(r['efficacy'], 2)} | {_f(r['control_efficacy'], 2)} |")
    lines += ["", "The selected features:", "",
              "| selected by | feature | input score | output score | train AUROC | held-out AUROC | cos with diff-means |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['selected by']} | {t['feature']} | {_f(t['input score'], 2)} | {_f(t['output score'])} | "
              f"{_f(t['train AUROC'])} | {_f(t['held-out AUROC'])} | {_f(t['cos with diff-means'])} |"
              for t in c["features"]]
    best = c["best_train_auroc_feature"]
    lines += ["", f"Input and output scores over the pool: Spearman {_f(c['input_output_spearman'], 2)}. The single "
              f"feature with the best train AUROC (feature {best['feature']}) detects with held-out AUROC "
              f"{_f(best['test_auroc'])}.", ""]
    for name_, a in c["alignment"].items():
        recon = {r["k"]: r["r2"] for r in a["reconstruction"]}
        lines.append(f"- Alignment of {name_}: best decoder rows " + ", ".join(
            f"{t['feature']} ({t['cosine']:+.2f})" for t in a["top"][:3]) + "; share of the direction reconstructed "
            "by its k best-aligned rows: " + ", ".join(f"k={k} {v:.2f}" for k, v in recon.items()) + ".")
    chosen = c["k_sparse_chosen"]
    lines += ["", "k-sparse probes on the latents (latents chosen by mean difference on train; held-out AUROC):", "",
              "| k | " + " | ".join(str(r["k"]) for r in c["k_sparse"]) + " |",
              "|---|" + "---|" * len(c["k_sparse"]),
              "| AUROC | " + " | ".join(_f(r["auroc"]) for r in c["k_sparse"]) + " |",
              "| accuracy | " + " | ".join(_f(r["accuracy"]) for r in c["k_sparse"]) + " |", "",
              f"Chosen k = {chosen['k']} ({chosen['folds']}-fold grouped CV on train): CV AUROC {_f(chosen['cv_auroc'])}, "
              f"held-out {_f(chosen['test_auroc'])} (accuracy {_f(chosen['test_accuracy'])})"
              + (f". **FLAG: {chosen['flag']}**" if chosen["flag"] else "; the two agree within 0.05.")]
    lines += ["", "What the selected features are (top contexts on train texts, peak token and activation; the "
              "tokens their decoder rows promote, logit lens):", ""]
    for view in c["feature_views"]:
        lines.append(f"- {view['method']} feature {view['feature']} (fires on {view['frequency']:.1%} of tokens): "
                     + " / ".join(f"`{ctx}`" for ctx in view["contexts"]) + f"; promotes {view['promoted']}, "
                     f"suppresses {view['suppressed']}.")
    return lines + [""]


def _paper_lines(concepts: dict) -> list[str]:
    lines = ["## Against the papers", ""]
    for name, c in concepts.items():
        rows = {r["method"]: r for r in c["methods"]}
        out, inp = rows["sae_output"]["efficacy"], rows["sae_input"]["efficacy"]
        ratio = out / inp if inp and np.isfinite(inp) and inp > 0 else float("inf") if out > 0 else float("nan")
        lines.append(f"- {name}: output-score feature efficacy {_f(out, 2)} vs input-score feature {_f(inp, 2)} "
                     f"(ratio {_f(ratio, 1)}; Arad et al.: {PAPERS['arad_output_vs_input']}); diff-means "
                     f"{_f(rows['diff_means']['efficacy'], 2)}, RaptorProbe {_f(rows['raptor']['efficacy'], 2)}, "
                     f"random {_f(rows['random']['efficacy'], 2)}. Detection: diff-means "
                     f"{_f(rows['diff_means']['detection_auroc'])}, input-score feature "
                     f"{_f(rows['sae_input']['detection_auroc'])}, output-score feature "
                     f"{_f(rows['sae_output']['detection_auroc'])} (AxBench: DiffMean "
                     f"{PAPERS['axbench_detection_diffmean']} vs SAE {PAPERS['axbench_detection_sae']}).")
    return lines


if __name__ == "__main__":
    main()

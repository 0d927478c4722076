"""Steering real models at a KL budget: truth verdicts, the causal test, sentiment (issue 14).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/real_steering.py --model smollm2-135m-instruct \
        --readouts this_statement_is,chat_few_shot --out benchmarks/results_real_steering/smollm2-135m-instruct
        # truth + sentiment, ~21 CPU-min (every readout candidate: the chosen one decides the cost)
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/real_steering.py --model gemma-3-270m --parts truth \
        --out benchmarks/results_real_steering/gemma-3-270m_truth          # ~23 CPU-min

The defaults are the sizes of the recorded runs (``results_real_steering.md``): candidate layers
12, 16 (SmolLM2) and 7, 9 (Gemma-3, chosen from a wider sweep in earlier runs), 16 calibration and 40
test cities, 16 neutral sentences, 3 random directions for the causal null. ``--readout chat_few_shot``
forces SmolLM2's chat form (its prompts are 5x longer: 38 CPU-min).

Writes OUT.json (every number) and OUT.md (the tables). Every steering strength is set by a KL
budget on neutral text (``--budget`` nats/token, 0.1 by default: :func:`alpha_at_kl`), every
choice of layer is made on calibration items and every reported number comes from test items,
beside a same-norm random direction. Parts:

1. truth verdicts on held-out Geometry of Truth cities (grouped split by city): the readout
   (a question the model answers both ways, chosen on calibration statements among a few
   candidates), then difference of means vs RaptorProbe vs LDA vs random: flips false->true
   (+alpha) and true->false (-alpha) at the budget, the efficacy-KL frontier, and RAPTOR's
   clamp to p* = 0.9999 / 0.0001 at the RAPTOR probe's layer;
2. the causal test of Ying et al. ("The Truthfulness Spectrum Hypothesis"): the change of
   log P(correct country) - log P(incorrect country) after "The city of X is in";
3. sentiment: CAA (mean over SST-2 contrast pairs) and ActAdd (one pair) vectors steering open-ended
   completions, single layer vs every candidate layer; scored by a sentiment probe fitted on the
   OTHER real model's activations of SST-2 (applied to that model's activations of the generated
   text) and a lexicon rate, with the judge model's perplexity of the text, KL and perplexity.

No vector crosses models: the two models meet only through behaviour (the judge reads text).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import steerlab
from steerlab.capture import capture
from steerlab.steering.calibration import norm_scaled_vectors
from steerlab.probes import LDA, DiffMeans, RaptorProbe, auroc
from steerlab.steering import (SteeringVector, metrics, perplexity, random_control, steer, steering_sweep,
                               word_rate)
from steerlab.steering.kl_budget import alpha_at_kl, side_effects
from steerlab.steering.readouts import (VerdictReadout, answer_gap, balanced_threshold, chat_prompt,
                                        first_token_ids, verdict_margins)

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

MODELS = {  # candidate layers (truth / sentiment), the judge model, and how to ask for a review
    "smollm2-135m-instruct": dict(layers=[12, 16], sentiment_layers=[6, 10, 14], judge="gemma-3-270m"),
    "gemma-3-270m": dict(layers=[7, 9], sentiment_layers=[4, 6, 9], judge="smollm2-135m-instruct"),
}
REVIEW_TOPICS = ["the restaurant", "the hotel", "the film", "the museum", "the coffee shop", "the concert",
                 "the bookshop", "the train journey"]
POSITIVE_WORDS = """good great excellent delicious amazing wonderful friendly fantastic lovely perfect best love loved
enjoy enjoyed enjoyable pleasant fresh tasty beautiful nice recommend recommended awesome superb outstanding happy
delightful impressive impressed charming cozy cosy welcoming attentive warm fun brilliant favorite favourite glad
comfortable memorable stunning gorgeous incredible exceptional satisfying helpful clean""".split()
NEGATIVE_WORDS = """bad terrible awful poor worst horrible bland rude disappointing disappointed slow cold dirty overpriced
mediocre hate hated unpleasant boring stale greasy noisy dull mess messy unfriendly annoying waste wasted avoid
sadly unfortunately lacking tasteless soggy burnt crowded expensive broken sad angry worse disgusting uncomfortable
problem problems failed fail""".split()


# ----------------------------------------------------------------- small helpers


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def rounded(value, digits: int = 4):
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(item, digits) for item in value]
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, digits)
    return value


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(cell) if not isinstance(cell, str) else cell for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def lexicon_rate(texts: list[str]) -> float:
    """(positive - negative lexicon words) per word, over all texts."""
    return word_rate(texts, POSITIVE_WORDS) - word_rate(texts, NEGATIVE_WORDS)


# ----------------------------------------------------------------- data


def load_cities(n_cal: int, n_test: int, n_train: int, seed: int) -> dict[str, list[dict]]:
    """Rows of the cities CSV split by city: test, calibration and probe-training cities (disjoint)."""
    rows = list(csv.DictReader(open(DATA / "got_cities.csv", encoding="utf-8")))
    cities = sorted({row["city"] for row in rows})
    random.Random(seed).shuffle(cities)
    parts = {"test": cities[:n_test], "cal": cities[n_test:n_test + n_cal],
             "train": cities[n_test + n_cal:n_test + n_cal + n_train]}
    by_city: dict[str, list[dict]] = {}
    for row in rows:
        by_city.setdefault(row["city"], []).append(row)
    return {name: [row for city in names for row in by_city[city]] for name, names in parts.items()}


def neutral_texts(n: int) -> list[str]:
    lines = [line for line in (HERE / "real_steering" / "neutral.txt").read_text(encoding="utf-8").splitlines() if line]
    return lines[:n]


def sst2(n_per_class: int, offset: int = 0) -> tuple[list[str], list[str]]:
    """The first ``n_per_class`` positive and negative SST-2 sentences after skipping ``offset`` of each."""
    rows = list(csv.DictReader(open(DATA / "sst2_train.csv", encoding="utf-8")))
    positive = [row["text"] for row in rows if row["label"] == "1"][offset:offset + n_per_class]
    negative = [row["text"] for row in rows if row["label"] == "0"][offset:offset + n_per_class]
    return positive, negative


# ----------------------------------------------------------------- readouts


def readout_candidates(model, shots) -> dict:
    """Named verdict readouts for this model (chat forms only where the tokenizer has a template)."""
    candidates = {"this_statement_is": VerdictReadout("{statement} This statement is", " true", " false")}
    candidates["few_shot_this_statement_is"] = VerdictReadout("{statement} This statement is", " true", " false",
                                                              shots=shots)
    compact = "{statement}"
    candidates["few_shot_tf"] = VerdictReadout(compact, " True", " False", shots=shots,
                                               assistant_prefix=" True or false?")
    candidates["few_shot_statement"] = VerdictReadout("Statement: {statement}\nTrue or false?", " True", " False",
                                                      shots=shots)
    if getattr(model.tokenizer, "chat_template", None) is not None:
        question = 'Is this statement true or false? "{statement}" Answer with one word.'
        candidates["chat_zero_shot"] = VerdictReadout(question, "True", "False", chat=True)
        candidates["chat_few_shot"] = VerdictReadout(question, "True", "False", chat=True, shots=shots[:2])
    return candidates


def verdict_stats(gaps: torch.Tensor, labels: np.ndarray) -> dict:
    judged_true = (gaps > 0).numpy()
    return {"true_judged_true": float(judged_true[labels == 1].mean()),
            "false_judged_true": float(judged_true[labels == 0].mean()),
            "accuracy": float((judged_true == (labels == 1)).mean()),
            "balanced_accuracy": float((judged_true[labels == 1].mean() + (~judged_true[labels == 0]).mean()) / 2),
            "auroc": float(auroc(labels, gaps.numpy())), "mean_log_odds": float(gaps.mean())}


# ----------------------------------------------------------------- truth steering


def fit_probes(model, train_rows, layers, seed):
    """DiffMeans, RaptorProbe and LDA at each candidate layer on the plain training statements."""
    acts = capture(model, [row["statement"] for row in train_rows], layers=layers, position="last", progress=False)
    y = np.array([int(row["label"]) for row in train_rows])
    groups = np.array([row["city"] for row in train_rows])
    probes = {"diff_means": DiffMeans(), "raptor": RaptorProbe(Cs=100, random_state=seed), "lda": LDA()}
    return {name: probe.fit(acts, y, groups=groups) for name, probe in probes.items()}


def probe_accuracy(model, probes, rows, layers) -> dict:
    acts = capture(model, [row["statement"] for row in rows], layers=layers, position="last", progress=False)
    y = np.array([int(row["label"]) for row in rows])
    out = {}
    for name, probe in probes.items():
        predicted = probe.predict(acts.numpy())  # [n, n_layers]
        out[name] = {layer: float((predicted[:, i] == y).mean()) for i, layer in enumerate(layers)}
    return out


def truth_vectors(model, probes, layers, neutral, seed) -> dict:
    """``{method: {layer: vector}}``: each probe's unit direction at the layer's median token norm; random
    controls of the same norm."""

    vectors = {name: norm_scaled_vectors(model, probe, neutral, layers) for name, probe in probes.items()}
    vectors["random"] = {layer: random_control(vector, seed=seed + layer)
                         for layer, vector in vectors["diff_means"].items()}
    return vectors


def verdict_gaps(model, prompts, readout) -> torch.Tensor:
    """``[n]`` log P(positive verdict) - log P(negative verdict) - the readout's threshold (> 0: judged true)."""
    return verdict_margins(model, readout, prompts)


def flip_share(before: torch.Tensor, after: torch.Tensor, toward_true: bool) -> float:
    """As ``flip_rate``: among verdicts unsteered on the other side, the share on the intended side after (NaN: none)."""
    intended = (lambda gaps: gaps > 0) if toward_true else (lambda gaps: gaps < 0)
    candidates = ~intended(before)
    return float(intended(after)[candidates].float().mean()) if candidates.any() else float("nan")


def flips(model, vector, alpha, sets, readout, **kwargs) -> dict:
    """Flip rates both ways and the mean log-odds shift: ``+alpha`` on false statements, ``-alpha`` on true ones.

    ``sets``: ``{"0": (prompts, unsteered gaps), "1": (...)}``. As ``flip_rate``: only statements whose
    unsteered verdict is on the other side count (NaN when there are none).
    """

    out = {}
    for sign, label, name in ((1, "0", "false_to_true"), (-1, "1", "true_to_false")):
        prompts, before = sets[label]
        with steer(model, vector, alpha=sign * alpha, **kwargs):
            after = verdict_gaps(model, prompts, readout)
        out[name] = flip_share(before, after, toward_true=sign > 0)
        out[name + "_log_odds_shift"] = float((after - before).mean())
        out[name + "_candidates"] = int(((before <= 0) if sign > 0 else (before >= 0)).sum())
    return out


def causal_shift(model, vector, alpha, located) -> float:
    prompts, correct, incorrect, baseline = located
    with steer(model, vector, alpha=alpha):
        return float((answer_gap(model, prompts, correct, incorrect) - baseline).mean())


def locate(model, rows) -> tuple:
    """``("The city of X is in" prompts, correct / incorrect country first tokens, unsteered gaps)`` for the
    cities whose two countries start with different tokens, neither with "the" ("the United States")."""
    pairs = {}
    for row in rows:
        pairs.setdefault(row["city"], {})[row["label"]] = row
    prompts, correct, incorrect = [], [], []
    for city, pair in pairs.items():
        if set(pair) != {"0", "1"} or any(pair[label]["country"].startswith("the ") for label in pair):
            continue  # " the" would stand for every "the ..." country
        good, bad = first_token_ids(model.tokenizer, [" " + pair["1"]["country"], " " + pair["0"]["country"]])
        if good != bad:
            prompts.append(f"The city of {city} is in")
            correct.append(int(good))
            incorrect.append(int(bad))
    correct, incorrect = torch.tensor(correct), torch.tensor(incorrect)
    return prompts, correct, incorrect, answer_gap(model, prompts, correct, incorrect)


def run_truth(model, args, spec, neutral, reference) -> dict:
    layers = args.layers or spec["layers"]
    split = load_cities(args.cal_cities, args.test_cities, args.train_cities, args.seed)
    shot_rows = split["train"][:8]
    shots = tuple((row["statement"], row["label"] == "1") for row in
                  [shot_rows[0], shot_rows[3], shot_rows[5], shot_rows[6]])  # T, F, F, T (cities differ)
    result: dict = {"layers": layers, "n_statements": {k: len(v) for k, v in split.items()},
                    "shots": [list(shot) for shot in shots]}

    # -- readout: chosen on calibration statements (balanced accuracy once its threshold is calibrated there)

    t0 = time.perf_counter()
    candidates = readout_candidates(model, shots)
    if args.readouts:
        unknown = set(args.readouts) - set(candidates)
        if unknown:
            raise SystemExit(f"--readouts: unknown {sorted(unknown)}; this model has {sorted(candidates)}.")
        candidates = {name: candidates[name] for name in args.readouts}
    cal_labels = np.array([int(row["label"]) for row in split["cal"]])
    test_labels = np.array([int(row["label"]) for row in split["test"]])
    readout_rows = {}
    for name, readout in candidates.items():
        gaps = verdict_gaps(model, readout.prompts(model.tokenizer, [r["statement"] for r in split["cal"]]), readout)
        threshold = balanced_threshold(gaps, cal_labels)
        readout_rows[name] = {**verdict_stats(gaps, cal_labels), "threshold": threshold,
                              "calibrated": verdict_stats(gaps - threshold, cal_labels)}
        log(f"readout {name}: {readout_rows[name]}")
    chosen_name = args.readout or max(readout_rows, key=lambda n: readout_rows[n]["auroc"])
    readout = replace(candidates[chosen_name], threshold=readout_rows[chosen_name]["threshold"])
    prompts = {part: readout.prompts(model.tokenizer, [r["statement"] for r in split[part]]) for part in ("cal", "test")}
    by_label = {part: {label: [p for p, r in zip(prompts[part], split[part]) if r["label"] == label]
                       for label in ("0", "1")} for part in prompts}
    sets = {part: {label: (texts, verdict_gaps(model, texts, readout)) for label, texts in groups.items()}
            for part, groups in by_label.items()}
    test_gaps = verdict_gaps(model, prompts["test"], readout)
    result["readouts_calibration"] = readout_rows
    result["readout"] = {"name": chosen_name, "question": readout.question, "words": [readout.positive, readout.negative],
                         "chat": readout.chat, "n_shots": len(readout.shots), "example": prompts["test"][0],
                         "threshold": readout.threshold, "test": verdict_stats(test_gaps, test_labels),
                         "test_uncalibrated": verdict_stats(test_gaps + readout.threshold, test_labels)}
    result["seconds_readouts"] = time.perf_counter() - t0
    log(f"readout chosen: {chosen_name}; test {result['readout']['test']}")

    # -- probes and their held-out accuracy (detection, beside steering)
    t0 = time.perf_counter()
    probes = fit_probes(model, split["train"], layers, args.seed)
    result["probe_accuracy_test"] = probe_accuracy(model, probes, split["test"], layers)
    result["probe_accuracy_cal"] = probe_accuracy(model, probes, split["cal"], layers)
    result["seconds_probes"] = time.perf_counter() - t0
    log(f"probe accuracy (test): {result['probe_accuracy_test']}")
    vectors = truth_vectors(model, probes, layers, neutral, args.seed)
    located = {part: locate(model, split[part]) for part in ("cal", "test")}
    result["causal_unsteered"] = {part: {"n": len(located[part][0]),
                                         "mean_gap": float(located[part][3].mean()),
                                         "correct_preferred": float((located[part][3] > 0).float().mean())}
                                  for part in located}
    log(f"causal test, unsteered: {result['causal_unsteered']}")

    # -- alpha at the KL budget for every (method, layer); calibration flips and causal shifts there
    t0 = time.perf_counter()
    calibration = {}
    for method, per_layer in vectors.items():
        for layer, vector in per_layer.items():
            point = alpha_at_kl(model, vector, neutral, args.budget, start=args.alpha_start, reference=reference)
            row = {"alpha": point.alpha, "kl": point.kl, "perplexity": point.perplexity, "reached": point.reached,
                   "trace": point.trace,
                   **flips(model, vector, point.alpha, sets["cal"], readout),
                   "causal_plus": causal_shift(model, vector, point.alpha, located["cal"]),
                   "causal_minus": causal_shift(model, vector, -point.alpha, located["cal"])}
            calibration[f"{method}@{layer}"] = row
            log(f"cal {method}@{layer}: alpha {point.alpha:.3g} KL {point.kl:.3f} f->t {fmt(row['false_to_true'])} "
                f"t->f {fmt(row['true_to_false'])} causal shift at +alpha {row['causal_plus']:.3f}, "
                f"at -alpha {row['causal_minus']:.3f}")
    result["calibration"] = calibration
    result["seconds_calibration"] = time.perf_counter() - t0

    def verdict_score(row):  # both directions of flips; the log-odds shifts break ties (and NaN)
        flips_both = [row[k] for k in ("false_to_true", "true_to_false") if not math.isnan(row[k])]
        return (sum(flips_both) / max(len(flips_both), 1),
                row["false_to_true_log_odds_shift"] - row["true_to_false_log_odds_shift"])

    # -- test: each method at its calibration-chosen layer and budget alpha, beside the random control
    t0 = time.perf_counter()
    test, causal = {}, {}
    for method in vectors:
        keys = [f"{method}@{layer}" for layer in layers]
        best_verdict = max(keys, key=lambda k: verdict_score(calibration[k]))
        best_causal = max(keys, key=lambda k: calibration[k]["causal_plus"] - calibration[k]["causal_minus"])
        for kind, key, store in (("verdict", best_verdict, test), ("causal", best_causal, causal)):
            layer = int(key.split("@")[1])
            vector, alpha = vectors[method][layer], calibration[key]["alpha"]
            control = vectors["random"][layer]
            kl_minus, ppl_minus = side_effects(model, vector, -alpha, neutral, reference)
            row = {"layer": layer, "alpha": alpha, "kl_plus": calibration[key]["kl"], "kl_minus": kl_minus,
                   "perplexity_plus": calibration[key]["perplexity"], "perplexity_minus": ppl_minus}
            if kind == "verdict":
                row.update(flips(model, vector, alpha, sets["test"], readout))
                if method != "random":
                    row["control"] = flips(model, control, alpha, sets["test"], readout)
            else:
                row["plus"] = causal_shift(model, vector, alpha, located["test"])
                row["minus"] = causal_shift(model, vector, -alpha, located["test"])
                if method != "random":
                    row["control_plus"] = causal_shift(model, control, alpha, located["test"])
                    row["control_minus"] = causal_shift(model, control, -alpha, located["test"])
                # the null: |shift| under more same-norm random directions at this layer and alpha
                nulls = [abs(causal_shift(model, random_control(vector, seed=args.seed + 1000 + k), sign * alpha,
                                          located["test"])) for k in range(args.n_controls) for sign in (1, -1)]
                row["null_abs_mean"], row["null_abs_max"] = float(np.mean(nulls)), float(np.max(nulls))
            if method != "random":
                row["control_kl_plus"] = side_effects(model, control, alpha, neutral, reference)[0]
            store[method] = row
            log(f"test {kind} {method}@{layer}: {rounded(row, 3)}")
    result["test_verdicts"], result["test_causal"] = test, causal
    result["seconds_test"] = time.perf_counter() - t0

    # -- efficacy-KL frontier on test statements at each method's verdict layer (library sweep)
    t0 = time.perf_counter()
    frontier = {}
    for method, row in test.items():
        vector = vectors[method][row["layer"]]
        alphas = [row["alpha"] * factor for factor in args.frontier]
        for sign, label, name in ((1, "0", "false_to_true"), (-1, "1", "true_to_false")):
            prompts_, before = sets["test"][label]

            def efficacy(steered, prompts_=prompts_, before=before, sign=sign) -> float:
                return flip_share(before, verdict_gaps(steered, prompts_, readout), toward_true=sign > 0)
            swept = steering_sweep(model, vector, [sign * a for a in alphas], efficacy, neutral, control=False, progress=False)
            frontier.setdefault(method, {})[name] = [{"alpha": r.alpha, "kl": r.kl, "efficacy": r.efficacy,
                                                      "perplexity": r.perplexity} for r in swept.rows]
        log(f"frontier {method}: {rounded(frontier[method], 3)}")
    result["frontier"] = frontier
    result["seconds_frontier"] = time.perf_counter() - t0

    # -- RAPTOR's clamp (p* = 0.9999 toward true on false statements, 0.0001 toward false on true ones)
    t0 = time.perf_counter()

    raptor_layer = max(layers, key=lambda layer: result["probe_accuracy_cal"]["raptor"][layer])
    clamp_vector = SteeringVector.from_probe(probes["raptor"], layer=raptor_layer)
    clamp = {"layer": raptor_layer, "probe_accuracy_test": result["probe_accuracy_test"]["raptor"][raptor_layer]}
    for target, label, name in ((0.9999, "0", "false_to_true"), (0.0001, "1", "true_to_false")):
        prompts_, before = sets["test"][label]
        for positions in ("last", "all"):
            with steer(model, clamp_vector, mode="clamp", target=target, positions=positions) as stats:
                after = verdict_gaps(model, prompts_, readout)
            clamp[f"{name}_{positions}"] = flip_share(before, after, toward_true=target > 0.5)
            clamp[f"{name}_{positions}_log_odds_shift"] = float((after - before).mean())
            clamp[f"{name}_{positions}_edited_tokens"] = stats.edited_tokens
        kl, ppl = side_effects(model, clamp_vector, 0.0, neutral, reference, mode="clamp", target=target)
        clamp[f"{name}_kl_all"], clamp[f"{name}_perplexity_all"] = kl, ppl
    result["clamp"] = clamp
    result["seconds_clamp"] = time.perf_counter() - t0
    log(f"clamp: {rounded(clamp, 3)}")
    return result


# ----------------------------------------------------------------- sentiment


def review_prompts(model, topics: list[str]) -> list[str]:
    if getattr(model.tokenizer, "chat_template", None) is not None:
        return [chat_prompt(model.tokenizer, [(f"Write a short review of {topic}.", None)]) for topic in topics]
    return [f"Here is a short review of {topic}.\n\nReview:" for topic in topics]


def fit_judge(judge, args) -> dict:
    """A sentiment probe on the judge model's SST-2 activations: layer chosen on validation sentences."""
    n = judge.n_layers
    layers = sorted({n // 4, n // 2, (3 * n) // 4})
    pos, neg = sst2(args.judge_train, offset=0)
    val_pos, val_neg = sst2(args.judge_val, offset=args.judge_train)
    train = capture(judge, pos + neg, layers=layers, position="last", progress=False)
    val = capture(judge, val_pos + val_neg, layers=layers, position="last", progress=False)
    y, y_val = np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[np.ones(len(val_pos)), np.zeros(len(val_neg))]
    probe = RaptorProbe(Cs=30, random_state=args.seed).fit(train, y)
    accuracy = {layer: float((probe.predict(val.numpy())[:, i] == y_val).mean()) for i, layer in enumerate(layers)}
    layer = max(accuracy, key=accuracy.get)
    return {"probe": probe, "layer": layer, "layers": layers, "val_accuracy": accuracy}


def judge_texts(judge, judge_fit, texts: list[str]) -> dict:
    """The judge probe's mean P(positive) and share judged positive, the lexicon rate, the judge's perplexity."""
    texts = [text.strip() or "." for text in texts]
    acts = capture(judge, texts, layers=judge_fit["layers"], position="last", progress=False)
    slot = judge_fit["layers"].index(judge_fit["layer"])
    probability = judge_fit["probe"].predict_proba(acts.numpy())[:, slot, 1]
    return {"p_positive": float(probability.mean()), "judged_positive": float((probability > 0.5).mean()),
            "lexicon": lexicon_rate(texts), "judge_perplexity": perplexity(judge, texts)}


def run_sentiment(model, judge, args, spec, neutral, reference) -> dict:
    layers = args.sentiment_layers or spec["sentiment_layers"]
    t0 = time.perf_counter()
    judge_fit = fit_judge(judge, args)
    result: dict = {"judge": judge.name, "judge_layer": judge_fit["layer"], "judge_val_accuracy": judge_fit["val_accuracy"],
                    "layers": layers, "seconds_judge": time.perf_counter() - t0}
    log(f"judge {judge.name}: layer {judge_fit['layer']}, validation accuracy {judge_fit['val_accuracy']}")
    topics = {"cal": REVIEW_TOPICS[::2], "test": REVIEW_TOPICS[1::2]}
    prompts = {part: review_prompts(model, names) for part, names in topics.items()}
    result["prompt_example"] = prompts["test"][0]

    def generate(part, vectors=None, alpha=0.0) -> list[str]:
        if vectors is None:
            return model.generate(prompts[part], max_new_tokens=args.new_tokens)
        with steer(model, vectors, alpha=alpha):
            return model.generate(prompts[part], max_new_tokens=args.new_tokens)

    # -- vectors: CAA (mean over SST-2 pairs) and ActAdd (one pair) per layer, in units of the median token norm
    t0 = time.perf_counter()
    pos, neg = sst2(args.caa_pairs, offset=args.judge_train + args.judge_val)

    def norm_scaled(vector):
        vector = vector.with_typical_norm(model, neutral)
        return replace(vector, direction=vector.unit * vector.typical_norm)

    vectors = {"caa": {}, "actadd": {}, "random": {}}
    for layer in layers:
        vectors["caa"][layer] = norm_scaled(SteeringVector.from_contrast_pairs(model, pos, neg, layer=layer))
        vectors["actadd"][layer] = norm_scaled(SteeringVector.from_contrast_pairs(model, pos[:1], neg[:1], layer=layer))
        vectors["random"][layer] = random_control(vectors["caa"][layer], seed=args.seed + layer)
    multi = [vectors["caa"][layer] for layer in layers]
    result["seconds_vectors"] = time.perf_counter() - t0

    unsteered = {part: generate(part) for part in prompts}
    result["unsteered"] = {part: judge_texts(judge, judge_fit, texts) for part, texts in unsteered.items()}
    result["unsteered_examples"] = unsteered["test"][:2]
    log(f"unsteered: {rounded(result['unsteered'], 3)}")

    # -- calibration: alpha at the budget for each (vector, layer) and sign; the layer chosen on cal prompts
    t0 = time.perf_counter()
    calibration = {}
    candidates = [(method, layer, vector) for method, per_layer in vectors.items() for layer, vector in per_layer.items()]
    candidates.append(("caa_multi", "+".join(map(str, layers)), multi))
    for method, layer, vector in candidates:
        for sign in (1, -1):
            point = alpha_at_kl(model, vector, neutral, args.budget, start=sign * args.alpha_start, reference=reference)
            scores = judge_texts(judge, judge_fit, generate("cal", vector, point.alpha))
            calibration[f"{method}@{layer}{'+' if sign > 0 else '-'}"] = {
                "alpha": point.alpha, "kl": point.kl, "perplexity": point.perplexity, "reached": point.reached, **scores}
            log(f"sentiment cal {method}@{layer} sign {sign}: alpha {point.alpha:.3g} KL {point.kl:.3f} {rounded(scores, 3)}")
    result["calibration"] = calibration
    result["seconds_calibration"] = time.perf_counter() - t0

    # -- test prompts: each vector at its chosen layer (largest spread of P(positive) between the signs)
    t0 = time.perf_counter()
    test = {}
    for method in ("caa", "actadd", "random", "caa_multi"):
        keys = sorted({key[:-1] for key in calibration if key.startswith(method + "@")})
        key = max(keys, key=lambda k: calibration[k + "+"]["p_positive"] - calibration[k + "-"]["p_positive"])
        layer_label = key.split("@")[1]
        vector = multi if method == "caa_multi" else vectors[method][int(layer_label)]
        row = {"layer": layer_label}
        for sign, suffix in ((1, "+"), (-1, "-")):
            alpha = calibration[key + suffix]["alpha"]
            texts = generate("test", vector, alpha)
            row[suffix] = {"alpha": alpha, "kl": calibration[key + suffix]["kl"],
                           "perplexity": calibration[key + suffix]["perplexity"],
                           **judge_texts(judge, judge_fit, texts), "example": texts[0]}
            if method in ("caa", "actadd"):  # same-norm random direction at the same layer and alpha
                control = vectors["random"][int(layer_label)]
                row[suffix]["control"] = {**judge_texts(judge, judge_fit, generate("test", control, alpha)),
                                          "kl": side_effects(model, control, alpha, neutral, reference)[0]}
        test[method] = row
        log(f"sentiment test {method}@{layer_label}: {rounded({k: v for k, v in row.items()}, 3)}")
    result["test"] = test
    result["seconds_test"] = time.perf_counter() - t0

    # -- efficacy-KL frontier of CAA at its chosen layer on test prompts
    t0 = time.perf_counter()
    layer = int(test["caa"]["layer"])
    frontier = []
    for sign, suffix in ((1, "+"), (-1, "-")):
        base_alpha = test["caa"][suffix]["alpha"]
        for factor in args.sentiment_frontier:
            alpha = base_alpha * factor
            kl, ppl = side_effects(model, vectors["caa"][layer], alpha, neutral, reference)
            frontier.append({"alpha": alpha, "kl": kl, "perplexity": ppl,
                             **judge_texts(judge, judge_fit, generate("test", vectors["caa"][layer], alpha))})
            log(f"sentiment frontier caa@{layer} alpha {alpha:.3g}: {rounded(frontier[-1], 3)}")
    result["frontier_caa"] = {"layer": layer, "rows": frontier}
    result["seconds_frontier"] = time.perf_counter() - t0
    return result


# ----------------------------------------------------------------- report


def markdown(result: dict, command: str) -> str:
    out = [f"## {result['model']}", "", "```bash", command, "```", "",
           f"torch {result['torch']} ({result['threads']} threads), CPU {result['cpu']}; "
           f"wall time {result['seconds_total']:.0f} s, CPU time {result.get('cpu_seconds_total', float('nan')):.0f} s "
           f"(load average at the end {fmt(result.get('load_average', [None])[0])} on a shared 2-core machine); KL budget {result['budget']} nats/token on "
           f"{result['n_neutral']} neutral sentences (unsteered perplexity {result['neutral_perplexity']:.2f}).", ""]
    truth = result.get("truth")
    if truth:
        out += ["### Truth verdicts", "", f"Statements (by city): {truth['n_statements']}; candidate layers "
                f"{truth['layers']}. Readouts on the calibration statements (unsteered):", ""]
        out.append(table(["readout", "true judged true", "false judged true", "balanced acc", "AUROC", "mean log-odds"],
                         [[name, r["true_judged_true"], r["false_judged_true"], r["balanced_accuracy"], r["auroc"],
                           r["mean_log_odds"]] for name, r in truth["readouts_calibration"].items()]))
        r = truth["readout"]["test"]
        out += ["", f"Chosen: `{truth['readout']['name']}`; on the test statements: true judged true "
                f"{r['true_judged_true']:.2f}, false judged true {r['false_judged_true']:.2f}, accuracy "
                f"{r['accuracy']:.3f}, AUROC {r['auroc']:.3f}.", "", "Probe accuracy on the test statements (plain):", ""]
        out.append(table(["method"] + [str(layer) for layer in truth["layers"]],
                         [[name] + [acc[str(layer)] if str(layer) in acc else acc[layer] for layer in truth["layers"]]
                          for name, acc in truth["probe_accuracy_test"].items()]))
        out += ["", "Test statements, each method at its calibration-chosen layer, alpha at the KL budget "
                "(random control: same layer, norm and alpha):", ""]
        rows = []
        for method, row in truth["test_verdicts"].items():
            control = row.get("control", {})
            rows.append([method, str(row["layer"]), row["alpha"], row["kl_plus"], row["kl_minus"], row["false_to_true"],
                         row["true_to_false"], row["false_to_true_log_odds_shift"], row["true_to_false_log_odds_shift"],
                         control.get("false_to_true"), control.get("true_to_false"), row.get("control_kl_plus")])
        out.append(table(["method", "layer", "alpha", "KL +", "KL -", "flips f->t", "flips t->f", "log-odds shift +",
                          "log-odds shift -", "control f->t", "control t->f", "control KL"], rows))
        c = truth["clamp"]
        out += ["", f"RAPTOR clamp at layer {c['layer']} (probe test accuracy {c['probe_accuracy_test']:.3f}): "
                f"p*=0.9999 flips f->t {fmt(c['false_to_true_last'])} (last token) / {fmt(c['false_to_true_all'])} "
                f"(every token), KL {c['false_to_true_kl_all']:.3f}; p*=0.0001 flips t->f {fmt(c['true_to_false_last'])}"
                f" / {fmt(c['true_to_false_all'])}, KL {c['true_to_false_kl_all']:.3f}.", "", "Frontier (test):", ""]
        rows = []
        for method, ways in truth["frontier"].items():
            for way, points in ways.items():
                rows.append([method, way] + [f"{p['kl']:.3f}: {fmt(p['efficacy'])}" for p in points])
        out.append(table(["method", "flips", *[f"x{f:g} (KL: flips)" for f in result["frontier_factors"]]], rows))
        cu = truth["causal_unsteered"]["test"]
        out += ["", f"### Causal test (Ying et al.)", "", f"Test cities with distinct first tokens: {cu['n']}; unsteered "
                f"mean log P(correct) - log P(incorrect) {cu['mean_gap']:.2f}, correct preferred {cu['correct_preferred']:.2f}.", ""]
        rows = [[m, str(r["layer"]), r["alpha"], r["kl_plus"], r["kl_minus"], r["plus"], r["minus"], r.get("control_plus"),
                 r.get("control_minus"), r.get("null_abs_mean"), r.get("null_abs_max")]
                for m, r in truth["test_causal"].items()]
        out.append(table(["method", "layer", "alpha", "KL +", "KL -", "shift +alpha", "shift -alpha", "control +",
                          "control -", "null mean abs", "null max abs"], rows))
    sentiment = result.get("sentiment")
    if sentiment:
        out += ["", "### Sentiment", "", f"Judge: {sentiment['judge']} probe at layer {sentiment['judge_layer']} "
                f"(SST-2 validation accuracy {sentiment['judge_val_accuracy']}).", ""]
        rows = [["unsteered", "", "", "", "", *[sentiment["unsteered"]["test"][k] for k in
                                                   ("p_positive", "lexicon", "judge_perplexity")], "", "", ""]]
        for method, row in sentiment["test"].items():
            for suffix in ("+", "-"):
                r = row[suffix]
                control = r.get("control", {})
                rows.append([f"{method} {suffix}", row["layer"], r["alpha"], r["kl"], r["perplexity"], r["p_positive"],
                             r["lexicon"], r["judge_perplexity"], control.get("p_positive"), control.get("lexicon"),
                             control.get("kl")])
        out.append(table(["vector", "layer", "alpha", "KL", "ppl", "P(pos) judge", "lexicon", "judge ppl",
                          "control P(pos)", "control lexicon", "control KL"], rows))
        out += ["", "CAA frontier (test prompts):", ""]
        out.append(table(["alpha", "KL", "ppl", "P(pos)", "lexicon", "judge ppl"],
                         [[r["alpha"], r["kl"], r["perplexity"], r["p_positive"], r["lexicon"], r["judge_perplexity"]]
                          for r in sentiment["frontier_caa"]["rows"]]))
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--out", required=True, help="output path without suffix: writes OUT.json and OUT.md")
    parser.add_argument("--parts", default="truth,sentiment", help="comma-separated: truth, sentiment")
    parser.add_argument("--budget", type=float, default=0.1, help="KL budget, nats/token on neutral text")
    parser.add_argument("--layers", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--sentiment-layers", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--readout", default=None, help="force a named readout instead of choosing on calibration")
    parser.add_argument("--readouts", type=lambda s: s.split(","), default=None,
                        help="comma-separated candidate readouts (default: all for this model)")
    parser.add_argument("--cal-cities", type=int, default=16)
    parser.add_argument("--test-cities", type=int, default=40)
    parser.add_argument("--train-cities", type=int, default=300)
    parser.add_argument("--n-neutral", type=int, default=16)
    parser.add_argument("--alpha-start", type=float, default=0.1, help="first alpha tried (x median token norm)")
    parser.add_argument("--frontier", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 2.0, 4.0])
    parser.add_argument("--sentiment-frontier", type=lambda s: [float(x) for x in s.split(",")], default=[2.0, 4.0, 8.0])
    parser.add_argument("--caa-pairs", type=int, default=128)
    parser.add_argument("--judge-train", type=int, default=300, help="SST-2 sentences per class to fit the judge")
    parser.add_argument("--judge-val", type=int, default=100)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--n-controls", type=int, default=3, help="random directions for the causal test's null")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--markdown-from", default=None, help="only re-render OUT.md from this OUT.json")
    args = parser.parse_args()
    out = Path(args.out)
    command = "OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(["benchmarks/real_steering.py"] + sys.argv[1:])
    if args.markdown_from:
        saved = json.loads(Path(args.markdown_from).read_text(encoding="utf-8"))
        out.with_suffix(".md").write_text(markdown(saved, saved.get("command", command)), encoding="utf-8")
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    start, cpu_start = time.perf_counter(), time.process_time()
    spec = MODELS[args.model]
    model = steerlab.load_model(args.model)
    neutral = neutral_texts(args.n_neutral)
    reference = metrics.token_logprobs(model, neutral)
    result = {"model": args.model, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "budget": args.budget, "n_neutral": len(neutral),
              "neutral_perplexity": math.exp(metrics.mean_nll(model, neutral, reference)),
              "frontier_factors": args.frontier, "args": vars(args)}
    try:
        result["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    result["command"] = command
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    if "truth" in parts:
        result["truth"] = run_truth(model, args, spec, neutral, reference)
        out.with_suffix(".partial.json").write_text(json.dumps(rounded(result), indent=1, default=str), encoding="utf-8")
    if "sentiment" in parts:
        judge = steerlab.load_model(spec["judge"])
        result["sentiment"] = run_sentiment(model, judge, args, spec, neutral, reference)
    result["seconds_total"] = time.perf_counter() - start
    result["cpu_seconds_total"] = time.process_time() - cpu_start
    result["load_average"] = os.getloadavg()
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rounded(result), indent=1, default=str), encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(json.loads(json.dumps(rounded(result), default=str)), command),
                                      encoding="utf-8")
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({result['seconds_total']:.0f} s)")


if __name__ == "__main__":
    main()

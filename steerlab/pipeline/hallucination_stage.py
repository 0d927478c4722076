"""The demo's hallucination stage: token-level probes on the model's own answers vs output confidence.

Train split questions of ``demo/qa`` -> greedy answers -> hidden states of every answer
token -> token labels from the fact table -> layer chosen by Bayesian optimisation
(optuna TPE; the exhaustive sweep is run too, for comparison) -> an MLP probe (Liang &
Wang, arXiv 2512.20949) and a linear probe (Obeso et al., arXiv 2509.03531) at that
layer, both reading each answer token's own state as the papers do -> steerlab's variant, the
same MLP on the token's state, the state that produced it (one position earlier, where the
next-token uncertainty lives) and the two output-confidence numbers, with its own layer
search -> evaluated on
the test split's answers against 1 - max probability and entropy, per token and per answer
(max over its tokens), overall and on the confidently wrong answers -> a few answers scored
live, token by token.

``metrics`` (JSON-able; NaN written as None):

* ``layer``, ``site``; ``data``: answers / wrong answers / tokens / hallucinated tokens per split;
* ``methods``: per method (``mlp``, ``mlp_plus``, ``linear``, ``max_prob``, ``entropy``): ``token`` and
  ``answer`` dicts with ``auroc``, ``recall@1%fpr``, ``recall@5%fpr``, ``recall@10%fpr``,
  ``accuracy``, ``precision``, ``recall``, ``n``, ``n_positive``, plus ``threshold`` (the
  probes' F1-best validation threshold; the baselines' F1-best threshold on the train split);
* ``layer_search``: ``best_layer``, ``n_fits``, ``trials``, ``exhaustive`` (layer -> validation
  AUROC), ``exhaustive_best_layer``; ``layer_search_plus``: the same for ``mlp_plus``;
  ``probe_inputs``: per probe, the ``layer``, the ``state`` (token / both) and whether it reads confidence;
* ``confident``: answers whose first token had max probability > 0.9: ``n``, ``n_wrong``, and per
  method ``auroc`` and ``recall`` (at its threshold); ``by_role``: per entity role, wrong answers and
  the share of them each method flags;
* ``probes``: the fitted probes' settings and validation results; ``live``: streamed examples and
  the largest difference to the offline scores; ``timings`` (seconds).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from steerlab.pipeline.output import StageClock

CONFIDENT = 0.9  # "confidently wrong": the first answer token had max probability above this
PROBE_METHODS = ("mlp", "mlp_plus", "linear")
BASELINES = ("max_prob", "entropy")
METHODS = (*PROBE_METHODS, *BASELINES)
METHOD_NAMES = {"mlp": "MLP probe (Liang & Wang)", "mlp_plus": "MLP probe on token + producing states + confidence (steerlab)",
                "linear": "linear probe (Obeso et al.)", "max_prob": "1 - max probability", "entropy": "entropy"}


def run_hallucination_stage(adapter: Any, progress: bool = True) -> tuple[dict[str, Any], list[Any]]:
    """Run the stage on ``adapter`` (the demo model); returns ``(metrics, report sections)``.

    Example:
        >>> import steerlab
        >>> metrics, sections = run_hallucination_stage(steerlab.load_model("demo"), progress=False)  # doctest: +SKIP
        >>> metrics["methods"]["mlp"]["answer"]["auroc"] > 0.75                                   # doctest: +SKIP
        True
    """
    from steerlab.datasets import load
    from steerlab.hallucination import generation, labels
    from steerlab.hallucination.evaluation import confidence_scores, detection_metrics
    from steerlab.hallucination.layer_search import probe_objective, search_layer
    from steerlab.probes import HallucinationProbe, LinearTokenProbe
    from steerlab.probes.metrics import best_f1_threshold

    clock = StageClock()
    lap, timings = clock.lap, clock.timings

    qa = {split: load("demo/qa", split=split) for split in ("train", "test")}
    gen = {split: generation.generate_and_capture(adapter, qa[split].texts, progress=progress) for split in qa}
    lab = {split: labels.reference_labels(gen[split].tokens, gen[split].answer_index, qa[split].answers)
           for split in qa}
    lap("generate_capture")

    train, test = gen["train"], gen["test"]
    y_train, y_test = lab["train"].token, lab["test"].token
    inputs = {"token": ("token", False), "plus": ("both", True)}  # (state, confidence columns)
    searches = {name: search_layer(probe_objective(HallucinationProbe(), train.all_layer_features(*read), train.layers,
                                                   y_train, train.answer_index),
                                   train.layers, n_trials=6, n_startup_trials=2, seed=0, exhaustive=True)
                for name, read in inputs.items()}
    search, layer = searches["token"], searches["token"].best_layer
    lap("layer_search")

    reads = {"mlp": (layer, "token", False), "mlp_plus": (searches["plus"].best_layer, "both", True),
             "linear": (layer, "token", False)}
    probes = {"mlp": HallucinationProbe(), "mlp_plus": HallucinationProbe(), "linear": LinearTokenProbe()}
    for name, probe in probes.items():
        probe.fit(train.features(*reads[name]), y_train, groups=train.answer_index)
        probe.layer, probe.site, probe.model_name = reads[name][0], train.site, adapter.name
    lap("fit")

    scores = {name: probe.predict_proba(test.features(*reads[name]))[:, 1] for name, probe in probes.items()}
    thresholds = {name: probe.threshold_ for name, probe in probes.items()}
    train_baselines = confidence_scores(train.max_prob, train.entropy)
    scores |= confidence_scores(test.max_prob, test.entropy)
    thresholds |= {name: best_f1_threshold(y_train, train_baselines[name]) for name in train_baselines}
    methods = {name: {**detection_metrics(y_test, scores[name], test.answer_index, thresholds[name]),
                      "threshold": thresholds[name]} for name in METHODS}
    confident, by_role = _subsets(test, lab["test"].answer, np.array(qa["test"].roles), scores, thresholds)
    lap("evaluate")

    live = _live_examples(adapter, probes["mlp_plus"], reads["mlp_plus"], test, lab["test"].answer, scores["mlp_plus"])
    lap("live")
    timings["total"] = round(sum(timings.values()), 2)

    metrics = {
        "layer": layer, "site": train.site,
        "data": {split: {"answers": gen[split].n_answers, "wrong_answers": int(lab[split].answer.sum()),
                         "tokens": len(gen[split]), "hallucinated_tokens": int(lab[split].token.sum())}
                 for split in gen},
        "methods": methods,
        "layer_search": search.to_dict(),
        "layer_search_plus": searches["plus"].to_dict(),
        "probe_inputs": {name: {"layer": layer_, "state": state, "confidence": confidence}
                         for name, (layer_, state, confidence) in reads.items()},
        "confident": confident,
        "by_role": by_role,
        "probes": {name: {"class": type(p).__name__, "params": {k: v for k, v in p.get_params().items()},
                          "best_epoch": p.best_epoch_ + 1, "n_epochs": p.n_epochs_, "val_auroc": p.val_auroc_,
                          "fit_seconds": round(p.fit_seconds_, 2)} for name, p in probes.items()},
        "live": live,
        "timings": timings,
    }
    metrics = _clean(metrics)
    return metrics, _sections(metrics, test, y_test, scores, search)


def _subsets(test: Any, answer_labels: np.ndarray, roles: np.ndarray, scores: dict[str, np.ndarray],
             thresholds: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Answer-level results on the confidently answered questions, and per entity role."""
    from steerlab.probes.metrics import auroc, group_max

    answers, _ = group_max(np.zeros(len(test)), test.answer_index)
    first = test.position == 0
    confidence = np.zeros(test.n_answers)
    confidence[test.answer_index[first]] = test.max_prob[first]
    wrong = answer_labels[answers] == 1
    sure = confidence[answers] > CONFIDENT
    answer_scores = {name: group_max(s, test.answer_index)[1] for name, s in scores.items()}
    flagged = {name: s >= thresholds[name] for name, s in answer_scores.items()}
    wrong_roles = roles[answers][sure & wrong].tolist()
    confident = {"min_confidence": CONFIDENT, "n": int(sure.sum()), "n_wrong": int((sure & wrong).sum()),
                 "wrong_by_role": {role: wrong_roles.count(role) for role in sorted(set(wrong_roles))},
                 "methods": {name: {"auroc": auroc(wrong[sure], answer_scores[name][sure]),
                                    "recall": float(flagged[name][sure & wrong].mean()) if (sure & wrong).any() else None,
                                    "false_positive_rate": float(flagged[name][sure & ~wrong].mean())}
                             for name in METHODS}}
    by_role = {}
    for role in sorted(set(roles[answers])):
        mine = roles[answers] == role
        by_role[role] = {"n": int(mine.sum()), "n_wrong": int((mine & wrong).sum()),
                         "recall": {name: float(flagged[name][mine & wrong].mean()) if (mine & wrong).any() else None
                                    for name in METHODS}}
    return confident, by_role


def _live_examples(adapter: Any, probe: Any, read: tuple[int, str, bool], test: Any, answer_labels: np.ndarray,
                   offline: np.ndarray) -> dict[str, Any]:
    """Stream two right and two confidently wrong test answers; compare with the offline scores."""
    from steerlab.hallucination.live import stream_scores

    first = test.position == 0
    confident = np.zeros(test.n_answers)
    confident[test.answer_index[first]] = test.max_prob[first]
    right = [i for i in np.argsort(-confident) if answer_labels[i] == 0][:2]
    wrong = [i for i in np.argsort(-confident) if answer_labels[i] == 1][:2]
    examples, largest = [], 0.0
    for i in [*right, *wrong]:
        streamed = list(stream_scores(adapter, probe, test.prompts[i], layer=read[0], state=read[1],
                                      confidence=read[2], max_new_tokens=8))
        rows = np.flatnonzero(test.answer_index == i)
        if [t for t, _ in streamed] == [test.tokens[r] for r in rows]:
            largest = max(largest, float(np.abs(np.array([s for _, s in streamed]) - offline[rows]).max()))
        examples.append({"prompt": test.prompts[i], "wrong": bool(answer_labels[i]), "confidence": float(confident[i]),
                         "tokens": [t for t, _ in streamed], "scores": [round(s, 4) for _, s in streamed]})
    return {"examples": examples, "max_abs_diff_offline": largest}


def _sections(metrics: dict[str, Any], test: Any, y_test: np.ndarray, scores: dict[str, np.ndarray],
              search: Any) -> list[Any]:
    from steerlab.hallucination.evaluation import method_table
    from steerlab.hallucination.figures import roc_figure, token_figure
    from steerlab.probes.metrics import group_max
    from steerlab.report import Section

    m, data = metrics["methods"], metrics["data"]
    auroc = {name: m[name]["answer"]["auroc"] for name in METHODS}
    best_probe = max(PROBE_METHODS, key=lambda name: auroc[name])
    best_baseline = max(BASELINES, key=lambda name: auroc[name])
    beats = auroc[best_probe] > auroc[best_baseline]
    verdict = (f"The {METHOD_NAMES[best_probe]} beats output confidence overall (answer AUROC {auroc[best_probe]:.3f} "
               f"vs {auroc[best_baseline]:.3f} for {METHOD_NAMES[best_baseline]})." if beats else
               f"Hidden-state probes do NOT beat output confidence overall on this model: answer AUROC "
               f"{auroc[best_probe]:.3f} for the {METHOD_NAMES[best_probe]} vs {auroc[best_baseline]:.3f} for "
               f"{METHOD_NAMES[best_baseline]}. Most wrong answers here are guesses the model itself is unsure of, "
               "which its output distribution already shows.")
    recall5 = {name: m[name]["answer"]["recall@5%fpr"] for name in METHODS}
    def best(names: Sequence[str], level: str, key: str) -> float:
        return max(m[name][level][key] or 0 for name in names)

    ahead = [f"{level} {key} ({best(PROBE_METHODS, level, key):.2f} vs {best(BASELINES, level, key):.2f})"
             for level in ("answer", "token") for key in ("auroc", "recall@1%fpr", "recall@5%fpr", "recall@10%fpr",
                                                          "accuracy", "precision")
             if best(PROBE_METHODS, level, key) > best(BASELINES, level, key)]
    where = ("Where a probe comes out ahead of both baselines (best probe vs best baseline): " + ", ".join(ahead)
             + ". Accuracy and precision depend on each method's threshold; the probes' thresholds flag fewer "
             "answers, with higher precision and lower recall." if ahead else
             "No probe comes out ahead of both baselines on any metric here.")
    table = [{**row, "answer accuracy": round(m[key]["answer"]["accuracy"], 3),
              "answer precision": _round(m[key]["answer"]["precision"]),
              "answer recall": _round(m[key]["answer"]["recall"])}
             for key, row in zip(METHODS, method_table({METHOD_NAMES[k]: m[k] for k in METHODS},
                                                        keys=("auroc", "recall@1%fpr", "recall@5%fpr",
                                                              "recall@10%fpr")))]
    answers, answer_y = group_max(y_test, test.answer_index)
    sections = [Section(
        "Hallucination detection on the model's own answers",
        [f"The demo model answered {data['train']['answers']} training-split questions ({data['train']['wrong_answers']} "
         f"wrong) and {data['test']['answers']} test-split questions ({data['test']['wrong_answers']} wrong) greedily. "
         "Each answer's entity token is labelled hallucinated when it differs from the world's fact table; the "
         f"full stop after it is not. As in the papers, the MLP and linear probes read the {metrics['site']} hidden "
         f"state of every answer token at layer {metrics['layer']} (the token as input: it encodes what was said). "
         "steerlab's variant adds the state one position earlier, the one whose next-token distribution produced "
         "the token (it encodes how sure the model was), and that distribution's max probability and entropy, at "
         f"layer {metrics['probe_inputs']['mlp_plus']['layer']}. "
         "An answer's score is the max over its tokens.", verdict,
         f"Detection at a low false-positive rate, where a deployed detector works: answer recall at 5% FPR is "
         f"{recall5['mlp']:.2f} (MLP), {recall5['mlp_plus']:.2f} (steerlab's MLP), "
         f"{recall5['linear']:.2f} (linear) vs {recall5['max_prob']:.2f} (1 - max probability) and "
         f"{recall5['entropy']:.2f} (entropy).", where],
        tables=[table],
        figures=[roc_figure({METHOD_NAMES[k]: (answer_y, group_max(scores[k], test.answer_index)[1]) for k in METHODS},
                            title="ROC per answer (test split)"),
                 roc_figure({METHOD_NAMES[k]: (y_test, scores[k]) for k in METHODS}, title="ROC per token (test split)")])]
    confident = metrics["confident"]
    c = confident["methods"]
    roles = ", ".join(f"{n} {role}" for role, n in confident["wrong_by_role"].items())
    probe_best = max(c[name]["auroc"] or 0 for name in PROBE_METHODS)
    baseline_best = max(c[name]["auroc"] or 0 for name in BASELINES)
    reading = ("Here the probes do better than confidence: the hidden states hold a doubt the output does not show."
               if probe_best > baseline_best else
               "The probes do not find these errors either: for a conflicted city the model's internal belief is "
               "itself wrong (its training text mostly names the wrong country), and a probe reads that belief.")
    sections.append(Section(
        "Confidently wrong answers",
        [f"{confident['n']} test answers had a first-token probability above {CONFIDENT}; {confident['n_wrong']} of them "
         f"are wrong ({roles}). Among these answers, "
         f"AUROC is {_fmt(c['mlp']['auroc'])} (MLP), {_fmt(c['mlp_plus']['auroc'])} (steerlab's MLP), "
         f"{_fmt(c['linear']['auroc'])} (linear), "
         f"{_fmt(c['max_prob']['auroc'])} (1 - max probability), {_fmt(c['entropy']['auroc'])} (entropy); at each "
         f"method's threshold the MLP flags {_pct(c['mlp']['recall'])} of these wrong answers, 1 - max probability "
         f"{_pct(c['max_prob']['recall'])}.", reading,
         "Share of wrong answers each method flags, by entity role: " + "; ".join(
             f"{role} ({r['n_wrong']} wrong): " + ", ".join(f"{k} {_pct(r['recall'][k])}" for k in METHODS)
             for role, r in metrics["by_role"].items() if r["n_wrong"])])
    )
    search_result = metrics["layer_search"]
    sections.append(Section(
        "Which layer: Bayesian optimisation vs the full sweep",
        [f"optuna's TPE sampler (seeded, 2 random start-up trials, 6 trials) picked layer {search_result['best_layer']} "
         f"after {search_result['n_fits']} probe fits; the exhaustive sweep of all {search_result['n_layers']} layers "
         f"finds layer {search_result['exhaustive_best_layer']} best. Validation AUROC per layer: "
         + ", ".join(f"layer {k}: {v:.3f}" for k, v in search_result["exhaustive"].items())
         + ". With 4 layers the saving is small; on deep models the search needs far fewer fits than layers. "
         f"For steerlab's MLP the search picked layer {metrics['layer_search_plus']['best_layer']} "
         f"({metrics['layer_search_plus']['n_fits']} fits; exhaustive best: "
         f"{metrics['layer_search_plus']['exhaustive_best_layer']})."],
        figures=[_search_figure(search)]))
    live = metrics["live"]
    sections.append(Section(
        "Live scoring",
        [f"Scores of steerlab's MLP, streamed token by token while the model answers (layer "
         f"{metrics['probe_inputs']['mlp_plus']['layer']}); they match the "
         f"offline scores to {live['max_abs_diff_offline']:.1e}. Top: the two most confident right answers; bottom: "
         "the two most confident wrong ones."],
        figures=[token_figure([(("WRONG " if e["wrong"] else "right ") + e["prompt"], e["tokens"], e["scores"])
                               for e in live["examples"]])]))
    return sections


def _search_figure(search: Any) -> Any:
    import plotly.graph_objects as go

    layers = list(search.exhaustive)
    figure = go.Figure(go.Bar(x=layers, y=[search.exhaustive[k] for k in layers], name="exhaustive sweep",
                              marker_color="lightgray"))
    figure.add_trace(go.Scatter(x=[layer for layer, _ in search.trials], y=[v for _, v in search.trials],
                                mode="markers+text", text=[str(i + 1) for i in range(len(search.trials))],
                                textposition="top center", name="TPE trials (order)"))
    low = min(search.exhaustive.values())
    return figure.update_layout(title="Validation AUROC by layer", xaxis_title="layer", yaxis_title="AUROC",
                                yaxis_range=[max(0.0, low - 0.05), 1.0], template="plotly_white", height=360)


def _clean(value: Any) -> Any:
    """JSON-able: numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"

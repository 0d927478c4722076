"""The demo's hallucination stage: token-level probes on the model's own answers vs output confidence.

Train split questions of ``demo/qa`` -> greedy answers -> hidden states of every answer
token -> token labels from the fact table -> layer chosen by Bayesian optimisation
(optuna TPE; the exhaustive sweep is run too, for comparison) -> an MLP probe (Liang &
Wang, arXiv 2512.20949) and a linear probe (Obeso et al., arXiv 2509.03531) at that
layer, both reading each answer token's own state as the papers do -> steerlab's variant, the
same MLP on the token's state, the state that produced it (one position earlier, where the
next-token uncertainty lives) and the two output-confidence numbers, with its own layer
search, its score combined with the output's odds (``with_output_odds``) -> evaluated on
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
* ``train_cv``: answer AUROC on the train split, ``mlp_plus`` by grouped 5-fold cross-validation
  and the confidence baselines (no test data);
* ``confident``: answers whose first token had max probability > 0.9: ``n``, ``n_wrong``, and per
  method ``auroc`` and ``recall`` (at its threshold); ``by_role``: per entity role, wrong answers and
  the share of them each method flags;
* ``probes``: the fitted probes' settings and validation results; ``live``: streamed examples,
  ``n_compared`` (those whose streamed tokens equal the offline ones) and ``max_abs_diff_offline``
  (the largest score difference on them; None when none is comparable); ``timings`` (seconds).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from steerlab.pipeline.output import StageClock, json_ready

CONFIDENT = 0.9  # "confidently wrong": the first answer token had max probability above this
PROBE_METHODS = ("mlp", "mlp_plus", "linear")
BASELINES = ("max_prob", "entropy")
METHODS = (*PROBE_METHODS, *BASELINES)
METHOD_NAMES = {"mlp": "MLP probe (Liang & Wang)", "mlp_plus": "steerlab detector (MLP on both states x output odds)",
                "linear": "linear probe (Obeso et al.)", "max_prob": "1 - max probability", "entropy": "entropy"}
SEARCH = {"n_trials": 6, "n_startup_trials": 2, "seed": 0}  # optuna TPE settings of the layer searches
PROBE_INPUTS = {"token": ("token", False), "plus": ("both", True)}  # layer search name -> (state, confidence)


# ---------------------------------------------------------------- computation


def run_hallucination_stage(adapter: Any, progress: bool = True, artifacts: str | os.PathLike | None = None,
                            data: tuple[Any, Any] | None = None, max_new_tokens: int = 8
                            ) -> tuple[dict[str, Any], list[Any]]:
    """Run the stage on ``adapter``; returns ``(metrics, report sections)``.

    ``data`` is ``(train, test)`` :class:`~steerlab.datasets.QADataset` (e.g. from
    :func:`~steerlab.datasets.qa_from_csv` and :func:`~steerlab.datasets.split_by_group`);
    by default the demo world's ``demo/qa``. Answers are generated greedily (at most
    ``max_new_tokens``) and checked against the references by
    :func:`~steerlab.hallucination.reference_labels`: the text before the first ``"."``.

    With ``artifacts``, the fitted token probes are saved there as ``hallucination_<method>``
    (safetensors + JSON; :func:`steerlab.probes.load_probe` reads them back).

    Example:
        >>> import steerlab
        >>> metrics, sections = run_hallucination_stage(steerlab.load_model("demo"), progress=False)  # doctest: +SKIP
        >>> metrics["methods"]["mlp"]["answer"]["auroc"] > 0.75                                   # doctest: +SKIP
        True
    """
    from steerlab.hallucination.evaluation import detection_metrics

    clock = StageClock()
    qa, gen, lab = _answers_and_labels(adapter, progress, data, max_new_tokens)
    clock.lap("generate_capture")
    train, test = gen["train"], gen["test"]
    y_train, y_test = lab["train"].token, lab["test"].token
    searches = {name: _search_layer(train, y_train, *read) for name, read in PROBE_INPUTS.items()}
    clock.lap("layer_search")
    layer = searches["token"].best_layer
    reads = {"mlp": (layer, "token", False), "mlp_plus": (searches["plus"].best_layer, "both", True),
             "linear": (layer, "token", False)}
    probes = _fit_probes(train, y_train, reads, adapter.name)
    if artifacts is not None:
        for name, probe in probes.items():
            probe.save(Path(artifacts) / f"hallucination_{name}")
    clock.lap("fit")
    train_cv, plus_out_of_fold = _train_cross_validation(train, y_train, reads["mlp_plus"])
    clock.lap("train_cv")
    scores, thresholds = _scores_and_thresholds(probes, reads, train, test, y_train, plus_out_of_fold)
    methods = {name: {**detection_metrics(y_test, scores[name], test.answer_index, thresholds[name]),
                      "threshold": thresholds[name]} for name in METHODS}
    confident, by_role = _subsets(test, lab["test"].answer, np.array(qa["test"].roles), scores, thresholds)
    clock.lap("evaluate")
    live = _live_examples(adapter, probes["mlp_plus"], reads["mlp_plus"], test, lab["test"].answer, scores["mlp_plus"])
    clock.lap("live")
    clock.timings["total"] = round(sum(clock.timings.values()), 2)

    metrics = json_ready({
        "layer": layer, "site": train.site,
        "data": {split: {"answers": gen[split].n_answers, "wrong_answers": int(lab[split].answer.sum()),
                         "tokens": len(gen[split]), "hallucinated_tokens": int(lab[split].token.sum())}
                 for split in gen},
        "methods": methods,
        "layer_search": searches["token"].to_dict(),
        "layer_search_plus": searches["plus"].to_dict(),
        "probe_inputs": {name: {"layer": layer_, "state": state, "confidence": confidence}
                         for name, (layer_, state, confidence) in reads.items()},
        "train_cv": train_cv,
        "confident": confident,
        "by_role": by_role,
        "probes": {name: _probe_summary(probe) for name, probe in probes.items()},
        "live": live,
        "timings": clock.timings,
    })
    return metrics, _sections(metrics, test, y_test, scores, searches["token"])


def _answers_and_labels(adapter: Any, progress: bool, data: tuple[Any, Any] | None, max_new_tokens: int
                        ) -> tuple[dict, dict, dict]:
    """Per split (train, test): the questions, the model's greedy answers captured, their labels."""
    from steerlab.datasets import load
    from steerlab.hallucination.generation import generate_and_capture
    from steerlab.hallucination.labels import reference_labels

    train, test = data if data is not None else (load("demo/qa", split="train"), load("demo/qa", split="test"))
    qa = {"train": train, "test": test}
    gen = {split: generate_and_capture(adapter, qa[split].texts, max_new_tokens=max_new_tokens, progress=progress)
           for split in qa}
    lab = {split: reference_labels(gen[split].tokens, gen[split].answer_index, qa[split].answers,
                                   tokenizer=adapter.tokenizer) for split in qa}
    return qa, gen, lab


def _search_layer(train: Any, y_train: np.ndarray, state: str, confidence: bool) -> Any:
    """optuna TPE over the captured layers for an MLP probe on ``features(layer, state, confidence)``
    (validation AUROC on a grouped split of the train answers), with the exhaustive sweep for comparison."""
    from steerlab.hallucination.layer_search import probe_objective, search_layer
    from steerlab.probes import HallucinationProbe

    objective = probe_objective(HallucinationProbe(), train.all_layer_features(state, confidence), train.layers,
                                y_train, train.answer_index)
    return search_layer(objective, train.layers, exhaustive=True, **SEARCH)


def _fit_probes(train: Any, y_train: np.ndarray, reads: dict[str, tuple[int, str, bool]], model_name: str
                ) -> dict[str, Any]:
    """The three probes fitted on the train answers, each on its ``(layer, state, confidence)`` input."""
    from steerlab.probes import HallucinationProbe, LinearTokenProbe

    probes = {"mlp": HallucinationProbe(), "mlp_plus": HallucinationProbe(), "linear": LinearTokenProbe()}
    for name, probe in probes.items():
        probe.fit(train.features(*reads[name]), y_train, groups=train.answer_index)
        probe.layer, probe.site, probe.model_name = reads[name][0], train.site, model_name
    return probes


def _scores_and_thresholds(probes: dict[str, Any], reads: dict[str, tuple[int, str, bool]], train: Any, test: Any,
                           y_train: np.ndarray, plus_out_of_fold: np.ndarray
                           ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Test-split token scores ``[n_tokens]`` of every method, and each method's decision threshold
    (the paper probes' F1-best on their validation split; steerlab's on its out-of-fold train scores;
    the baselines' F1-best on the train split)."""
    from steerlab.hallucination.evaluation import confidence_scores, with_output_odds
    from steerlab.probes.metrics import best_f1_threshold

    scores = {name: probe.predict_proba(test.features(*reads[name]))[:, 1] for name, probe in probes.items()}
    scores["mlp_plus"] = with_output_odds(scores["mlp_plus"], test.max_prob)
    scores |= confidence_scores(test.max_prob, test.entropy)
    thresholds = {name: probe.threshold_ for name, probe in probes.items()}
    thresholds["mlp_plus"] = best_f1_threshold(y_train, plus_out_of_fold)
    thresholds |= {name: best_f1_threshold(y_train, train_scores)
                   for name, train_scores in confidence_scores(train.max_prob, train.entropy).items()}
    return scores, thresholds


def _train_cross_validation(train: Any, y_train: np.ndarray, read: tuple[int, str, bool]
                            ) -> tuple[dict[str, float], np.ndarray]:
    """Answer AUROC on the train split without test data: steerlab's detector (its MLP by 5-fold
    cross-validation grouped by answer, with and without the output's odds) against the confidence
    baselines on the same answers; and the detector's out-of-fold scores ``[n_tokens]``."""
    from steerlab.hallucination.evaluation import (confidence_scores, cross_val_scores, detection_metrics,
                                                   with_output_odds)
    from steerlab.probes import HallucinationProbe

    probe_alone = cross_val_scores(HallucinationProbe(), train.features(*read).numpy(), y_train, train.answer_index)
    detector = with_output_odds(probe_alone, train.max_prob)
    scores = {"mlp_plus": detector, "mlp_plus_probe_alone": probe_alone,
              **confidence_scores(train.max_prob, train.entropy)}
    aurocs = {name: detection_metrics(y_train, s, train.answer_index)["answer"]["auroc"] for name, s in scores.items()}
    return aurocs, detector


def _probe_summary(probe: Any) -> dict[str, Any]:
    return {"class": type(probe).__name__, "params": probe.get_params(), "best_epoch": probe.best_epoch_ + 1,
            "n_epochs": probe.n_epochs_, "val_auroc": probe.val_auroc_, "fit_seconds": round(probe.fit_seconds_, 2)}


def _first_token_confidence(test: Any) -> np.ndarray:
    """``[n_answers]`` max probability of the distribution that produced each answer's first token."""
    first = test.position == 0
    confidence = np.zeros(test.n_answers)
    confidence[test.answer_index[first]] = test.max_prob[first]
    return confidence


def _subsets(test: Any, answer_labels: np.ndarray, roles: np.ndarray, scores: dict[str, np.ndarray],
             thresholds: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Answer-level results on the confidently answered questions, and per entity role."""
    from steerlab.probes.metrics import auroc, group_max

    answers, _ = group_max(np.zeros(len(test)), test.answer_index)
    wrong = answer_labels[answers] == 1
    sure = _first_token_confidence(test)[answers] > CONFIDENT
    answer_scores = {name: group_max(s, test.answer_index)[1] for name, s in scores.items()}
    flagged = {name: s >= thresholds[name] for name, s in answer_scores.items()}
    wrong_roles = roles[answers][sure & wrong].tolist()
    confident = {"min_confidence": CONFIDENT, "n": int(sure.sum()), "n_wrong": int((sure & wrong).sum()),
                 "wrong_by_role": {role: wrong_roles.count(role) for role in sorted(set(wrong_roles))},
                 "methods": {name: {"auroc": auroc(wrong[sure], answer_scores[name][sure]),
                                    "recall": _share(flagged[name], sure & wrong),
                                    "false_positive_rate": _share(flagged[name], sure & ~wrong)}
                             for name in METHODS}}
    by_role = {}
    for role in sorted(set(roles[answers])):
        mine = roles[answers] == role
        by_role[role] = {"n": int(mine.sum()), "n_wrong": int((mine & wrong).sum()),
                         "recall": {name: _share(flagged[name], mine & wrong) for name in METHODS}}
    return confident, by_role


def _share(flagged: np.ndarray, among: np.ndarray) -> float | None:
    """Share of the ``among`` answers that are flagged; None when there are none."""
    return float(flagged[among].mean()) if among.any() else None


def _live_examples(adapter: Any, probe: Any, read: tuple[int, str, bool], test: Any, answer_labels: np.ndarray,
                   offline: np.ndarray) -> dict[str, Any]:
    """Stream two right and two confidently wrong test answers; compare with the offline scores."""
    from steerlab.hallucination.live import stream_scores

    confidence = _first_token_confidence(test)
    order = np.argsort(-confidence)
    chosen = [i for i in order if answer_labels[i] == 0][:2] + [i for i in order if answer_labels[i] == 1][:2]
    examples, streams, offline_rows = [], [], []
    for i in chosen:
        streamed = list(stream_scores(adapter, probe, test.prompts[i], layer=read[0], state=read[1],
                                      confidence=read[2], with_output_odds=True, max_new_tokens=8))
        rows = np.flatnonzero(test.answer_index == i)
        streams.append(streamed)
        offline_rows.append(([test.tokens[r] for r in rows], offline[rows]))
        examples.append({"prompt": test.prompts[i], "wrong": bool(answer_labels[i]), "confidence": float(confidence[i]),
                         "tokens": [t for t, _ in streamed], "scores": [round(s, 4) for _, s in streamed]})
    largest, n_compared = offline_difference(streams, offline_rows)
    return {"examples": examples, "n_compared": n_compared, "max_abs_diff_offline": largest}


def offline_difference(streams: Sequence[Sequence[tuple[str, float]]],
                       offline: Sequence[tuple[Sequence[str], np.ndarray]]) -> tuple[float | None, int]:
    """``(largest |streamed - offline| score, number of examples compared)`` over the examples whose streamed
    tokens equal the offline ones (the others have no score to compare); ``(None, 0)`` when there are none."""
    differences = [float(np.abs(np.array([s for _, s in streamed]) - np.asarray(scores)).max())
                   for streamed, (tokens, scores) in zip(streams, offline)
                   if [t for t, _ in streamed] == list(tokens) and len(tokens)]
    return (max(differences) if differences else None), len(differences)


# ---------------------------------------------------------------- report prose (formats the numbers above)


def _sections(metrics: dict[str, Any], test: Any, y_test: np.ndarray, scores: dict[str, np.ndarray],
              search: Any) -> list[Any]:
    return [_overview_section(metrics, test, y_test, scores), _confident_section(metrics),
            _search_section(metrics, search), _live_section(metrics)]


def _overview_section(metrics: dict[str, Any], test: Any, y_test: np.ndarray, scores: dict[str, np.ndarray]) -> Any:
    from steerlab.hallucination.figures import roc_figure
    from steerlab.probes.metrics import group_max
    from steerlab.report import Section

    m, data = metrics["methods"], metrics["data"]
    recall5 = {name: m[name]["answer"]["recall@5%fpr"] for name in METHODS}
    _, answer_y = group_max(y_test, test.answer_index)
    return Section(
        "Hallucination detection on the model's own answers",
        [f"The demo model answered {data['train']['answers']} training-split questions ({data['train']['wrong_answers']} "
         f"wrong) and {data['test']['answers']} test-split questions ({data['test']['wrong_answers']} wrong) greedily. "
         "Each answer's entity token is labelled hallucinated when it differs from the world's fact table; the "
         f"full stop after it is not. As in the papers, the MLP and linear probes read the {metrics['site']} hidden "
         f"state of every answer token at layer {metrics['layer']} (the token as input). "
         "steerlab's variant adds the state one position earlier, the one whose next-token distribution produced "
         "the token, and that distribution's max probability and entropy, at "
         f"layer {metrics['probe_inputs']['mlp_plus']['layer']}; its log-odds are added to the output's own "
         "(1 - max probability), so it flags a token most when hidden states and output agree. "
         "An answer's score is the max over its tokens.", _verdict(metrics),
         f"Detection at a low false-positive rate, where a deployed detector works: answer recall at 5% FPR is "
         f"{_fmt(recall5['mlp'], '.2f')} (MLP), {_fmt(recall5['mlp_plus'], '.2f')} (steerlab's MLP), "
         f"{_fmt(recall5['linear'], '.2f')} (linear) vs {_fmt(recall5['max_prob'], '.2f')} (1 - max probability) and "
         f"{_fmt(recall5['entropy'], '.2f')} (entropy).", _where_probes_lead(m)],
        tables=[_method_rows(m)],
        figures=[roc_figure({METHOD_NAMES[k]: (answer_y, group_max(scores[k], test.answer_index)[1]) for k in METHODS},
                            title="ROC per answer (test split)"),
                 roc_figure({METHOD_NAMES[k]: (y_test, scores[k]) for k in METHODS}, title="ROC per token (test split)")])


def _verdict(metrics: dict[str, Any]) -> str:
    """Best probe vs best baseline by answer AUROC; when confidence wins, how many wrong answers were unsure."""
    auroc = {name: metrics["methods"][name]["answer"]["auroc"] or 0.0 for name in METHODS}
    probe = max(PROBE_METHODS, key=auroc.get)
    baseline = max(BASELINES, key=auroc.get)
    if auroc[probe] > auroc[baseline]:
        cv = metrics["train_cv"]
        cv_baseline = max(cv[name] for name in BASELINES)
        check = ("the same order, so the margin holds without test data." if cv["mlp_plus"] > cv_baseline else
                 "level or behind there, so on this model the margin over confidence is not established.")
        return (f"On the test split the {METHOD_NAMES[probe]} beats output confidence (answer AUROC {auroc[probe]:.3f} "
                f"vs {auroc[baseline]:.3f} for {METHOD_NAMES[baseline]}). By 5-fold cross-validation on the train "
                f"split (no test data), steerlab's detector scores {cv['mlp_plus']:.3f} (its MLP alone {cv['mlp_plus_probe_alone']:.3f}) against {cv_baseline:.3f} for the "
                f"better confidence baseline: {check}")
    verdict = (f"Hidden-state probes do NOT beat output confidence overall on this model: answer AUROC "
               f"{auroc[probe]:.3f} for the {METHOD_NAMES[probe]} vs {auroc[baseline]:.3f} for "
               f"{METHOD_NAMES[baseline]}.")
    n_wrong = metrics["data"]["test"]["wrong_answers"]
    unsure = n_wrong - metrics["confident"]["n_wrong"]
    if n_wrong and unsure > n_wrong / 2:
        verdict += (f" {unsure} of the {n_wrong} wrong answers had a first-token probability of at most {CONFIDENT}: "
                    "the output distribution already shows the model's doubt there.")
    return verdict


def _where_probes_lead(m: dict[str, Any]) -> str:
    """The metrics on which the best probe beats the best baseline, and each method's precision / recall."""
    def best(names: Sequence[str], level: str, key: str) -> float:
        return max(m[name][level][key] or 0 for name in names)

    ahead = [f"{level} {key} ({best(PROBE_METHODS, level, key):.2f} vs {best(BASELINES, level, key):.2f})"
             for level in ("answer", "token") for key in ("auroc", "recall@1%fpr", "recall@5%fpr", "recall@10%fpr",
                                                          "accuracy", "precision")
             if best(PROBE_METHODS, level, key) > best(BASELINES, level, key)]
    text = ("Where a probe comes out ahead of both baselines (best probe vs best baseline): " + ", ".join(ahead) + "."
            if ahead else "No probe comes out ahead of both baselines on any metric here.")
    at_threshold = ", ".join(f"{METHOD_NAMES[k]} {_fmt(m[k]['answer']['precision'], '.2f')} / "
                             f"{_fmt(m[k]['answer']['recall'], '.2f')}" for k in METHODS)
    return (text + " Accuracy, precision and recall depend on each method's threshold; answer precision / recall "
            f"at those thresholds: {at_threshold}.")


def _method_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    from steerlab.hallucination.evaluation import method_table

    rows = method_table({METHOD_NAMES[k]: m[k] for k in METHODS},
                        keys=("auroc", "recall@1%fpr", "recall@5%fpr", "recall@10%fpr"))
    return [{**row, "answer accuracy": _round(m[key]["answer"]["accuracy"]),
             "answer precision": _round(m[key]["answer"]["precision"]),
             "answer recall": _round(m[key]["answer"]["recall"])} for key, row in zip(METHODS, rows)]


def _confident_section(metrics: dict[str, Any]) -> Any:
    from steerlab.report import Section

    confident = metrics["confident"]
    c = confident["methods"]
    roles = ", ".join(f"{n} {role}" for role, n in confident["wrong_by_role"].items())
    aurocs = ", ".join(f"{_fmt(c[k]['auroc'])} ({METHOD_NAMES[k]})" for k in METHODS)
    recalls = ", ".join(f"{METHOD_NAMES[k]} {_pct(c[k]['recall'])}" for k in METHODS)
    return Section(
        "Confidently wrong answers",
        [f"{confident['n']} test answers had a first-token probability above {CONFIDENT}; {confident['n_wrong']} of them "
         f"are wrong ({roles or 'none'}). Among these answers, AUROC is {aurocs}. At each method's threshold, the "
         f"share of these wrong answers flagged: {recalls}.", _confident_reading(c),
         "Share of wrong answers each method flags, by entity role: " + "; ".join(
             f"{role} ({r['n_wrong']} wrong): " + ", ".join(f"{k} {_pct(r['recall'][k])}" for k in METHODS)
             for role, r in metrics["by_role"].items() if r["n_wrong"])])


def _confident_reading(c: dict[str, Any]) -> str:
    """Whether the best probe separates the confident answers better than the best baseline."""
    auroc = {name: c[name]["auroc"] for name in METHODS}
    if any(auroc[name] is None for name in METHODS):
        return "AUROC is undefined here (these answers are all right or all wrong)."
    probe = max(PROBE_METHODS, key=auroc.get)
    baseline = max(BASELINES, key=auroc.get)
    if auroc[probe] > auroc[baseline]:
        return (f"On these, the {METHOD_NAMES[probe]} separates wrong from right better than output confidence "
                f"(AUROC {auroc[probe]:.3f} vs {auroc[baseline]:.3f} for {METHOD_NAMES[baseline]}).")
    return (f"On these, no probe separates wrong from right better than output confidence (best probe AUROC "
            f"{auroc[probe]:.3f}, {METHOD_NAMES[probe]}, vs {auroc[baseline]:.3f} for {METHOD_NAMES[baseline]}).")


def _search_section(metrics: dict[str, Any], search: Any) -> Any:
    from steerlab.report import Section

    s, plus = metrics["layer_search"], metrics["layer_search_plus"]
    agreement = ("the same layer" if s["best_layer"] == s["exhaustive_best_layer"]
                 else f"layer {s['exhaustive_best_layer']}")
    saving = (f"Here the search fitted {s['n_fits']} of {s['n_layers']} layers"
              if s["n_fits"] < s["n_layers"] else f"Here the search fitted all {s['n_layers']} layers")
    return Section(
        "Which layer: Bayesian optimisation vs the full sweep",
        [f"optuna's TPE sampler (seed {SEARCH['seed']}, {SEARCH['n_startup_trials']} random start-up trials, "
         f"{SEARCH['n_trials']} trials) picked layer {s['best_layer']} after {s['n_fits']} probe fits; the exhaustive "
         f"sweep of all {s['n_layers']} layers finds {agreement} best. Validation AUROC per layer: "
         + ", ".join(f"layer {k}: {_fmt(v)}" for k, v in s["exhaustive"].items())
         + f". {saving}; a full sweep costs one fit per layer, while the search's fits are capped by its "
         f"{SEARCH['n_trials']} trials, whatever the depth. "
         f"For steerlab's MLP the search picked layer {plus['best_layer']} ({plus['n_fits']} fits; exhaustive best: "
         f"{plus['exhaustive_best_layer']})."],
        figures=[_search_figure(search)])


def _live_section(metrics: dict[str, Any]) -> Any:
    from steerlab.hallucination.figures import token_figure
    from steerlab.report import Section

    live = metrics["live"]
    if live["n_compared"]:
        check = (f"on the {live['n_compared']} of {len(live['examples'])} answers whose streamed tokens equal the "
                 f"offline ones, they match the offline scores to {live['max_abs_diff_offline']:.1e}")
    else:
        check = ("no streamed answer has the same tokens as the offline one, so there is no comparable example "
                 "to check the streamed scores against")
    return Section(
        "Live scoring",
        [f"Scores of steerlab's MLP, streamed token by token while the model answers (layer "
         f"{metrics['probe_inputs']['mlp_plus']['layer']}); {check}. Top: the two most confident right answers; "
         "bottom: the two most confident wrong ones."],
        figures=[token_figure([(("WRONG " if e["wrong"] else "right ") + e["prompt"], e["tokens"], e["scores"])
                               for e in live["examples"]])])


def _search_figure(search: Any) -> Any:
    import plotly.graph_objects as go

    layers = list(search.exhaustive)
    figure = go.Figure(go.Bar(x=layers, y=[search.exhaustive[k] for k in layers], name="exhaustive sweep",
                              marker_color="lightgray"))
    figure.add_trace(go.Scatter(x=[layer for layer, _ in search.trials], y=[v for _, v in search.trials],
                                mode="markers+text", text=[str(i + 1) for i in range(len(search.trials))],
                                textposition="top center", name="TPE trials (order)"))
    low = np.nanmin(list(search.exhaustive.values()))
    return figure.update_layout(title="Validation AUROC by layer", xaxis_title="layer", yaxis_title="AUROC",
                                yaxis_range=[max(0.0, low - 0.05), 1.0], template="plotly_white", height=360)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"

"""The hallucination stage's report sections: every sentence formats numbers the stage computed.

Split from :mod:`steerlab.pipeline.hallucination_stage` (which computes the metrics) so the prose
can be read and changed on its own; no claim here is written without the number behind it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from steerlab.pipeline.hallucination_methods import (BASELINES, CONFIDENT, METHOD_NAMES, METHODS, PROBE_METHODS,
                                                     SEARCH)


def sections(metrics: dict[str, Any], test: Any, y_test: np.ndarray, scores: dict[str, np.ndarray],
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

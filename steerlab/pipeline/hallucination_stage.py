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
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from steerlab.pipeline.hallucination_methods import CONFIDENT, METHODS, PROBE_INPUTS, SEARCH
from steerlab.pipeline.hallucination_report import sections
from steerlab.pipeline.output import StageClock, json_ready
from steerlab.pipeline.progress import StepBar

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelAdapter


# ---------------------------------------------------------------- computation


def run_hallucination_stage(adapter: ModelAdapter, progress: bool = True, artifacts: str | os.PathLike | None = None,
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
    clock.bar = StepBar("hallucination stage", ["layer search", "fit probes", "cross-validation", "evaluate",
                                                "live scoring"], enabled=progress)  # the laps below advance it
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
    return metrics, sections(metrics, test, y_test, scores, searches["token"])


def _answers_and_labels(adapter: ModelAdapter, progress: bool, data: tuple[Any, Any] | None, max_new_tokens: int
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
    from steerlab.hallucination import HallucinationProbe

    objective = probe_objective(HallucinationProbe(), train.all_layer_features(state, confidence), train.layers,
                                y_train, train.answer_index)
    return search_layer(objective, train.layers, exhaustive=True, **SEARCH)


def _fit_probes(train: Any, y_train: np.ndarray, reads: dict[str, tuple[int, str, bool]], model_name: str
                ) -> dict[str, Any]:
    """The three probes fitted on the train answers, each on its ``(layer, state, confidence)`` input."""
    from steerlab.hallucination import HallucinationProbe, LinearTokenProbe

    probes = {"mlp": HallucinationProbe(), "mlp_plus": HallucinationProbe(), "linear": LinearTokenProbe()}
    for name, probe in probes.items():
        probe.fit(train.features(*reads[name]), y_train, groups=train.answer_index)
        probe.layer_, probe.site_, probe.model_name_ = reads[name][0], train.site, model_name
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
    from steerlab.hallucination import HallucinationProbe

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


def _live_examples(adapter: ModelAdapter, probe: Any, read: tuple[int, str, bool], test: Any, answer_labels: np.ndarray,
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

"""``steerlab demo``: the probe-then-steer pipeline on the embedded demo model.

capture -> probe sweep on the truth domains -> transfer across domains -> calibrated
truth steering with a random control -> sentiment steering examples -> token-level
hallucination detection -> SAE feature comparison, then ``metrics.json``, the probe and
vector artifacts and a self-contained ``report.html``.

``metrics.json`` schema (version 1):

* ``model``: name, n_layers, d_model;
* ``probes``: ``sweep`` (rows: layer, method, accuracy, auroc, ece, stability, fit_seconds, C
  on a group split of the train entities), ``best_layers``, ``held_out_accuracy`` (RaptorProbe
  per layer on held-out cities), ``transfer`` (rows: train, test, auroc, cosines) and
  ``transfer_r2`` (fits of transfer AUROC on Mahalanobis and plain cosine);
* ``steering``: for the mass-mean truth direction, the chosen layer and alpha, calibration and test flip rates, the random
  control's, KL and perplexity on neutral text (see :mod:`steerlab.pipeline.truth_steering`),
  and ``sentiment`` examples with lexicon rates;
* ``hallucination``: detectors side by side on the demo QA test set (schema in
  :mod:`steerlab.pipeline.hallucination_stage`);
* ``sae``: SAE quality, alignment, feature probes and the detection / steering comparison
  (schema in :mod:`steerlab.pipeline.sae_stage`);
* ``timings`` (seconds per stage) and ``versions`` (steerlab, torch, transformers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.output_folder import staged_output
from steerlab.pipeline.output import StageClock, versions, write_json
from steerlab.report.html import Section

DOMAINS = ("cities", "larger_than", "people", "objects")
TITLE = "steerlab demo: probing and steering truth in the demo model"
INTRO = ("The embedded demo model was trained on a synthetic world whose facts are known, so every claim below is "
         "checked against ground truth.")
SENTIMENT_ALPHA = 2.0  # x the CAA mean difference


def run_demo(out: str | os.PathLike, *, overwrite: bool = False, model: Any = "demo", progress: bool = True
             ) -> dict[str, Any]:
    """Run the pipeline; returns the metrics written to ``out/metrics.json``.

    The output is built in a hidden sibling folder and replaces ``out`` only when every stage
    succeeded (see :func:`steerlab.pipeline.output.staged_output`).
    """
    with staged_output(out, overwrite) as work:
        return _write_demo(work, model, progress)


def _write_demo(out: Path, model: Any, progress: bool) -> dict[str, Any]:
    """Every stage of the demo, writing into ``out`` (the staging folder)."""
    import steerlab
    from steerlab.datasets import load, split_by_group
    from steerlab.pipeline.hallucination_stage import run_hallucination_stage
    from steerlab.pipeline.sae_stage import run_sae_stage
    from steerlab.pipeline.truth_steering import calibrate_truth_steering
    from steerlab.probes import DiffMeans, RaptorProbe, sweep, transfer_matrix
    from steerlab.report import write_report
    from steerlab.report.sections_file import save_sections
    from steerlab.steering import SteeringVector, logprob_difference, steer, word_rate
    from steerlab.world import templates

    clock = StageClock()
    lap, timings = clock.lap, clock.timings
    adapter = steerlab.load_model(model)
    splits = {name: (load(f"demo/{name}", split="train"), load(f"demo/{name}", split="test")) for name in DOMAINS}
    acts = {name: (steerlab.capture(adapter, train.texts, position="last", progress=progress),
                   steerlab.capture(adapter, test.texts, position="last", progress=False))
            for name, (train, test) in splits.items()}
    lap("capture")

    cities_train, cities_test = splits["cities"]
    table = sweep(acts["cities"][0], cities_train.labels, methods=["raptor", "diff_means", "lda", "logistic"],
                  groups=cities_train.groups, stability_runs=3)
    probe = RaptorProbe(Cs=100).fit(acts["cities"][0], cities_train.labels, groups=cities_train.groups)
    held_out = np.asarray(probe.score(acts["cities"][1].values.numpy(), cities_test.labels)).tolist()
    best_layer = int(np.argmax(held_out))
    transfer = transfer_matrix({name: {"train": (acts[name][0].layer(best_layer).numpy(), splits[name][0].labels),
                                       "test": (acts[name][1].layer(best_layer).numpy(), splits[name][1].labels)}
                                for name in DOMAINS})
    lap("probes")

    neutral = load("demo/topic", split="test").texts[:64]
    calibration = split_by_group(cities_test, "train", test_share=0.5, seed=0)
    test_half = split_by_group(cities_test, "test", test_share=0.5, seed=0)
    # Steer with the mass-mean direction: the most causal of the truth directions ("The Geometry of
    # Truth"); RaptorProbe stays the detector. benchmarks/steering_demo.py measures both.
    mass_mean = DiffMeans().fit(acts["cities"][0], cities_train.labels)
    truth = calibrate_truth_steering(adapter, mass_mean, calibration, test_half, neutral, progress=progress)
    examples = []
    if truth.vector is not None:
        # The verdict is read as log P(true word) - log P(false word) after the statement.
        false_prompts = [p for p, y in zip(test_half.verdict_prompts, test_half.labels) if y == 0][:8]
        words = test_half.verdict_words
        before = logprob_difference(adapter, false_prompts, *words)
        with steer(adapter, truth.vector, alpha=truth.results["alpha_norm_units"]):
            after = logprob_difference(adapter, false_prompts, *words)
        verdict = lambda margin: f"{words[0] if margin > 0 else words[1]} ({float(margin):+.1f})"
        examples = [{"false statement": p, "unsteered verdict (log-odds)": verdict(b),
                     "steered verdict (log-odds)": verdict(a)} for p, b, a in zip(false_prompts, before, after)]
    sentiment_train = load("demo/sentiment", split="train")
    positive = [t for t, y in zip(sentiment_train.texts, sentiment_train.labels) if y == 1][:200]
    negative = [t for t, y in zip(sentiment_train.texts, sentiment_train.labels) if y == 0][:200]
    caa = SteeringVector.from_contrast_pairs(adapter, positive, negative, layer=adapter.n_layers // 2)
    prompts = [f"my friend said the {thing} was" for thing in templates.REVIEW_THINGS[:8]]
    plain = adapter.generate(prompts, max_new_tokens=3)
    steered = {}
    for sign in (1.0, -1.0):
        with steer(adapter, caa, alpha=sign * SENTIMENT_ALPHA):
            steered[sign] = adapter.generate(prompts, max_new_tokens=3)
    sentiment = {"layer": caa.layers[0], "method": "CAA", "pairs": len(positive), "alpha": SENTIMENT_ALPHA,
                 "positive_rate_unsteered": word_rate(plain, templates.POSITIVE_ADJECTIVES),
                 "positive_rate_plus": word_rate(steered[1.0], templates.POSITIVE_ADJECTIVES),
                 "negative_rate_unsteered": word_rate(plain, templates.NEGATIVE_ADJECTIVES),
                 "negative_rate_minus": word_rate(steered[-1.0], templates.NEGATIVE_ADJECTIVES),
                 "examples": [{"prompt": p, "unsteered": a, "plus": b, "minus": c}
                              for p, a, b, c in zip(prompts, plain, steered[1.0], steered[-1.0])]}
    lap("steering")

    # The later stages: each returns its metrics and its report sections.
    hallucination, hallucination_sections = run_hallucination_stage(adapter, progress=progress,
                                                                    artifacts=out / "artifacts")
    lap("hallucination")
    sae, sae_sections = run_sae_stage(adapter, progress=progress)
    lap("sae")

    artifacts = out / "artifacts"
    probe.save(artifacts / "raptor_cities")
    if truth.vector is not None:
        truth.vector.save(artifacts / "truth_vector")
    caa.save(artifacts / "sentiment_vector")
    metrics = {
        "schema": 1,
        "model": {"name": adapter.name, "n_layers": adapter.n_layers, "d_model": adapter.d_model},
        "probes": {"sweep": table.to_records(), "best_layers": table.best_layers(),
                   "held_out_accuracy": held_out, "transfer_layer": best_layer,
                   "transfer": transfer.to_records(), "transfer_r2": transfer.fit_r2()},
        "steering": {"truth": truth.results, "truth_sweep": truth.sweep.to_records(), "truth_examples": examples,
                     "sentiment": sentiment},
        "hallucination": hallucination,
        "sae": sae,
        "timings": timings,
        "versions": versions(),
    }
    stages = {"probes": _probe_sections(metrics["probes"], table, transfer),
              "steering": _steering_sections(metrics["steering"], truth),
              "hallucination": hallucination_sections, "sae": sae_sections}
    for stage, sections in stages.items():
        save_sections(out, stage, sections)
    lap("report")
    run_section = [Section("Run", [f"Timings (s): {timings}. Versions: {metrics['versions']}."])]
    save_sections(out, "run", run_section)
    write_report(out / "report.html", TITLE, [s for sections in stages.values() for s in sections] + run_section,
                 intro=INTRO)
    write_json(out / "metrics.json", metrics)
    return metrics


def _probe_sections(probes: dict[str, Any], table: Any, transfer: Any) -> list[Section]:
    r2 = probes["transfer_r2"]
    return [
        Section("Where truth lives",
                ["Probes on the last token of each city statement, at every layer. On the training cities (a group "
                 "split of them) every method separates true from false at every layer: the model saw those "
                 "verdicts in training. The test that matters is held-out cities, whose verdicts it never saw: "
                 f"RaptorProbe's accuracy there is {', '.join(f'{a:.2f}' for a in probes['held_out_accuracy'])} "
                 "by layer."],
                figures=[_held_out_figure(probes["held_out_accuracy"]), table.figure("accuracy")]),
        Section("Does the direction transfer across domains?",
                [f"Train on one truth domain, test on another (layer {probes['transfer_layer']}). Transfer AUROC is "
                 f"predicted by the Mahalanobis cosine between the two directions (R^2 = "
                 f"{r2['mahalanobis']['r2']:.2f}) better than by the plain cosine (R^2 = {r2['cosine']['r2']:.2f}), "
                 "as the truthfulness-spectrum paper reports."],
                figures=[transfer.figure()]),
    ]


def _steering_sections(steering: dict[str, Any], truth: Any) -> list[Section]:
    truth_results = steering["truth"]
    sections = []
    if truth_results.get("chosen", True) is None:
        sections.append(Section("Steering", ["No (layer, alpha) met the calibration criteria."]))
    else:
        sections.append(Section(
            "Steering with the truth direction",
            [f"The mass-mean (difference-of-means) direction at layer {truth_results['layer']}, alpha = "
             f"{truth_results['alpha_norm_units']} x the layer's median token norm (chosen on half of the held-out "
             f"cities), flips {truth_results['test_flip_false_to_true']:.0%} of the other half's false statements "
             f"the model rejects to \"true\" and {truth_results['test_flip_true_to_false']:.0%} of true ones to "
             f"\"false\". A random direction of the same norm flips {truth_results['test_control_flip_false_to_true']:.0%}"
             f" and {truth_results['test_control_flip_true_to_false']:.0%}. KL on neutral text: "
             f"{truth_results['kl_neutral']:.3f} nats per token."],
            tables=[steering["truth_examples"]], figures=[truth.sweep.figure()]))
    sentiment = steering["sentiment"]
    sections.append(Section(
        "Steering sentiment",
        [f"A CAA vector from {sentiment['pairs']} review pairs at layer {sentiment['layer']}, alpha = "
         f"+-{sentiment['alpha']}: positive adjectives go from {sentiment['positive_rate_unsteered']:.0%} to "
         f"{sentiment['positive_rate_plus']:.0%} of the generated words, negative ones from "
         f"{sentiment['negative_rate_unsteered']:.0%} to {sentiment['negative_rate_minus']:.0%} "
         "(each completion is 'adjective .', so 50% means every completion)."],
        tables=[sentiment["examples"]]))
    return sections


def _held_out_figure(accuracy: list[float]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(x=list(range(len(accuracy))), y=accuracy, mode="lines+markers", name="RaptorProbe"))
    figure.add_hline(y=0.5, line=dict(dash="dot", color="gray"), annotation_text="chance")
    return figure.update_layout(title="Held-out cities: RaptorProbe accuracy by layer", xaxis_title="layer",
                                yaxis_title="accuracy", yaxis_range=[0.4, 1.02], template="plotly_white", height=360)

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
* ``steering``: ``truth``: for the mass-mean truth direction, the layer and alpha chosen under the KL
  budget on neutral text (0.1 nats per token; ``qualified`` False when the target flip rate was not
  reached within it, and the setting is then the best within the budget), calibration and test flip
  rates, the same-norm random control's at the same alpha, KL and perplexity on neutral text (see
  :mod:`steerlab.steering.calibration`); ``truth_sweep`` (every layer x alpha, vector and control:
  the efficacy-KL frontier); ``truth_examples``; ``sentiment``: a CAA vector's layer and alpha chosen
  the same way on next-adjective flips of calibration review prompts, its KL and control, and
  generations on other prompts with lexicon rates (+alpha, -alpha, the random control at +alpha);
  ``sentiment_sweep``;
* ``hallucination``: detectors side by side on the demo QA test set (schema in
  :mod:`steerlab.pipeline.hallucination_stage`);
* ``sae``: SAE quality, alignment, feature probes and the detection / steering comparison
  (schema in :mod:`steerlab.pipeline.demo_sae_stage`);
* ``timings`` (seconds per stage) and ``versions`` (steerlab, torch, transformers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steerlab.output_folder import staged_output
from steerlab.pipeline.output import StageClock, json_ready, versions, write_json
from steerlab.pipeline.progress import StepBar
from steerlab.report.run_info import run_info_section
from steerlab.report.html import Section

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelAdapter, ModelLike
    from steerlab.pipeline.sae_stage_process import SaeStageProcess

DOMAINS = ("cities", "larger_than", "people", "objects")
TITLE = "steerlab demo: probing and steering truth in the demo model"
INTRO = ("The embedded demo model was trained on a synthetic world whose facts are known, so every claim below is "
         "checked against ground truth.")
SENTIMENT_ALPHAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # x the CAA mean difference at each layer
SENTIMENT_TARGET = 0.9  # share of held-out review prompts whose next adjective turns positive
SHOWN_THINGS = 8  # review things whose generations are shown; the others calibrate (layer, alpha)


def run_demo(out: str | os.PathLike, *, overwrite: bool = False, model: ModelLike = "demo", progress: bool = True,
             sae_beside: bool | SaeStageProcess = False) -> dict[str, Any]:
    """Run the pipeline; returns the metrics written to ``out/metrics.json``.

    The output is built in a hidden sibling folder and replaces ``out`` only when every stage
    succeeded (see :func:`steerlab.pipeline.output.staged_output`).

    ``sae_beside``: run the SAE stage (the longest) in a second process, on its own copy of the
    model (loaded again from ``model``, which must then be a name or a path), while this one
    runs the others (:mod:`steerlab.pipeline.sae_stage_process`; True starts it here, on this
    process's torch thread count; ``steerlab demo`` passes one it started before importing
    torch, each process on half its threads). The results are the same, the wall time shorter
    where a second core is free: the demo model's small operations use two cores better as two
    processes on one torch thread each than as one process on two threads (intra-op threads
    mostly wait at barriers) or two Python threads (they wait for each other's interpreter lock).
    """
    if sae_beside is True and not isinstance(model, (str, os.PathLike)):
        raise ValueError("sae_beside=True loads a second copy of the model, so `model` must be a name or a path; "
                         "pass sae_beside=False to run the SAE stage after the others on the model object given.")
    beside = None
    try:
        if sae_beside is True:  # started first: it runs while this process runs the other stages
            import torch

            from steerlab.pipeline.sae_stage_process import SaeStageProcess

            beside = SaeStageProcess(model, torch.get_num_threads())
        elif sae_beside:
            beside = sae_beside
            if not isinstance(model, (str, os.PathLike)) or os.fspath(beside.model) != os.fspath(model):
                raise ValueError(f"sae_beside runs on model {beside.model!r}, the demo on {model!r}: start it "
                                 "on the same model.")
        with staged_output(out, overwrite) as work:
            return _write_demo(work, model, progress, beside)
    finally:
        if beside is not None:
            beside.close()  # stops it if another stage failed; removes its temporary folder


def _write_demo(out: Path, model: ModelLike, progress: bool, beside: SaeStageProcess | None = None) -> dict[str, Any]:
    """Every stage of the demo, writing into ``out`` (the staging folder)."""
    import steerlab
    from steerlab.datasets import load, split_by_group
    from steerlab.pipeline.hallucination_stage import run_hallucination_stage
    from steerlab.pipeline.demo_sae_stage import run_demo_sae_stage
    from steerlab.steering.calibration import calibrate_truth_steering
    from steerlab.probes import DiffMeans, RaptorProbe, probe_sweep, transfer_matrix
    from steerlab.report import write_report
    from steerlab.report.sections_file import save_page, save_sections
    from steerlab.steering import logprob_difference, steer

    clock = StageClock()
    lap, timings = clock.lap, clock.timings
    adapter = steerlab.load_model(model)
    splits = {name: (load(f"demo/{name}", split="train"), load(f"demo/{name}", split="test")) for name in DOMAINS}
    acts = {name: (steerlab.capture(adapter, train.texts, position="last", progress=progress),
                   steerlab.capture(adapter, test.texts, position="last", progress=False))
            for name, (train, test) in splits.items()}
    lap("capture")

    cities_train, cities_test = splits["cities"]
    clock.bar = StepBar("probes", ["sweep: 4 methods x every layer", "RaptorProbe on all training cities",
                                   "transfer across domains"], enabled=progress)  # lap("probes") ends it
    table = probe_sweep(acts["cities"][0], cities_train.labels, methods=["raptor", "diff_means", "lda", "logistic"],
                  groups=cities_train.groups, stability_runs=3)
    clock.bar.advance()
    probe = RaptorProbe(Cs=100).fit(acts["cities"][0], cities_train.labels, groups=cities_train.groups)
    held_out = np.asarray(probe.score(acts["cities"][1].values.numpy(), cities_test.labels)).tolist()
    best_layer = int(np.argmax(held_out))
    clock.bar.advance()
    transfer = transfer_matrix({name: {"train": (acts[name][0].layer(best_layer).numpy(), splits[name][0].labels),
                                       "test": (acts[name][1].layer(best_layer).numpy(), splits[name][1].labels)}
                                for name in DOMAINS})
    lap("probes")

    clock.bar = StepBar("steering", ["truth: sweep, then held-out flips", "truth: examples",
                                     "sentiment: CAA vectors", "sentiment: sweep and generations"], enabled=progress)
    neutral = load("demo/topic", split="test").texts[:64]
    calibration = split_by_group(cities_test, "train", test_share=0.5, seed=0)
    test_half = split_by_group(cities_test, "test", test_share=0.5, seed=0)
    # Steer with the mass-mean direction: the most causal of the truth directions ("The Geometry of
    # Truth"); RaptorProbe stays the detector. benchmarks/steering_demo.py measures both.
    mass_mean = DiffMeans().fit(acts["cities"][0], cities_train.labels)
    truth = calibrate_truth_steering(adapter, mass_mean, calibration, test_half, neutral, progress=progress)
    clock.bar.advance()
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
    clock.bar.advance()
    sentiment_sweep, sentiment = _sentiment_steering(adapter, neutral, progress, clock.bar)
    lap("steering")

    # The later stages: each returns its metrics and its report sections (the SAE stage beside the others:
    # its lap is only the time spent waiting for it after them).
    hallucination, hallucination_sections = run_hallucination_stage(adapter, progress=progress,
                                                                    artifacts=out / "artifacts")
    lap("hallucination")
    sae, sae_sections = run_demo_sae_stage(adapter, progress=progress) if beside is None else beside.result()
    lap("sae")

    artifacts = out / "artifacts"
    probe.save(artifacts / "raptor_cities")
    if truth.vector is not None:
        truth.vector.save(artifacts / "truth_vector")
    if "vector" in sentiment:
        sentiment.pop("vector").save(artifacts / "sentiment_vector")
    metrics = {
        "schema": 1,
        "model": {"name": adapter.name, "n_layers": adapter.n_layers, "d_model": adapter.d_model},
        "probes": {"sweep": table.to_records(), "best_layers": table.best_layers(),
                   "held_out_accuracy": held_out, "transfer_layer": best_layer,
                   "transfer": transfer.to_records(), "transfer_r2": transfer.fit_r2()},
        "steering": {"truth": truth.results, "truth_sweep": truth.sweep.to_records(), "truth_examples": examples,
                     "sentiment": sentiment, "sentiment_sweep": sentiment_sweep.to_records()},
        "hallucination": hallucination,
        "sae": sae,
        "timings": timings,
        "versions": versions(),
    }
    stages = {"probes": _probe_sections(metrics["probes"], table, transfer),
              "steering": _steering_sections(metrics["steering"], truth, sentiment_sweep),
              "hallucination": hallucination_sections, "sae": sae_sections}
    for stage, sections in stages.items():
        save_sections(out, stage, sections)
    lap("report")
    run_section = [run_info_section(timings, metrics["versions"])]
    save_sections(out, "run", run_section)
    save_page(out, TITLE, INTRO)
    write_report(out / "report.html", TITLE, [s for sections in stages.values() for s in sections] + run_section,
                 intro=INTRO, metrics=json_ready(metrics))
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


def _sentiment_steering(adapter: ModelAdapter, neutral: list[str], progress: bool, bar: StepBar | None = None
                        ) -> tuple[Any, dict[str, Any]]:
    """CAA sentiment vectors at every layer, (layer, alpha) chosen under the KL budget, then generations.

    Calibration: the share of "my friend said the {thing} was" prompts (things past the first
    :data:`SHOWN_THINGS`) whose next-token adjective turns from negative to positive; the
    generations shown use the first :data:`SHOWN_THINGS` things. Returns ``(sweep, metrics)``.
    """
    from steerlab.datasets import load
    from steerlab.steering import SteeringVector, steer, steering_sweep, word_rate
    from steerlab.steering.evaluation import KL_BUDGET, random_control, word_set_flip_rate
    from steerlab.world import templates

    train = load("demo/sentiment", split="train")
    positive = [t for t, y in zip(train.texts, train.labels) if y == 1][:200]
    negative = [t for t, y in zip(train.texts, train.labels) if y == 0][:200]
    vectors = {layer: SteeringVector.from_contrast_pairs(adapter, positive, negative, layer=layer)
               for layer in range(adapter.n_layers)}
    if bar is not None:
        bar.advance()
    things = templates.REVIEW_THINGS
    calibration = [f"my friend said the {thing} was" for thing in things[SHOWN_THINGS:]]
    efficacy = word_set_flip_rate(adapter, calibration, templates.POSITIVE_ADJECTIVES, templates.NEGATIVE_ADJECTIVES)
    result = steering_sweep(adapter, vectors, list(SENTIMENT_ALPHAS), efficacy, neutral, progress=progress)
    chosen = result.choose(target_efficacy=SENTIMENT_TARGET, kl_budget=KL_BUDGET, control_max=0.2)
    metrics: dict[str, Any] = {"method": "CAA", "pairs": len(positive), "kl_budget": KL_BUDGET,
                               "target": SENTIMENT_TARGET, "qualified": chosen is not None}
    point = result.best
    if point is None:
        return result, {**metrics, "chosen": None}
    vector, alpha = vectors[point.layer], point.alpha
    control_row = next(r for r in result.rows if r.control and (r.layer, r.alpha) == (point.layer, alpha))
    prompts = [f"my friend said the {thing} was" for thing in things[:SHOWN_THINGS]]
    plain = adapter.generate(prompts, max_new_tokens=3)
    steered = {}
    for name, candidate, coefficient in (("plus", vector, alpha), ("minus", vector, -alpha),
                                         ("control", random_control(vector, seed=0), alpha)):
        with steer(adapter, candidate, alpha=coefficient):
            steered[name] = adapter.generate(prompts, max_new_tokens=3)
    return result, {
        **metrics, "layer": point.layer, "alpha": alpha, "calibration_flip": point.efficacy,
        "calibration_control_flip": control_row.efficacy, "kl_neutral": point.kl,
        "control_kl_neutral": control_row.kl, "perplexity_neutral": point.perplexity,
        "perplexity_unsteered": result.baseline_perplexity,
        "positive_rate_unsteered": word_rate(plain, templates.POSITIVE_ADJECTIVES),
        "positive_rate_plus": word_rate(steered["plus"], templates.POSITIVE_ADJECTIVES),
        "positive_rate_control": word_rate(steered["control"], templates.POSITIVE_ADJECTIVES),
        "negative_rate_unsteered": word_rate(plain, templates.NEGATIVE_ADJECTIVES),
        "negative_rate_minus": word_rate(steered["minus"], templates.NEGATIVE_ADJECTIVES),
        "examples": [{"prompt": p, "unsteered": a, "plus": b, "minus": c, "random +alpha": d}
                     for p, a, b, c, d in zip(prompts, plain, steered["plus"], steered["minus"], steered["control"])],
        "vector": vector,
    }


def _steering_sections(steering: dict[str, Any], truth: Any, sentiment_sweep: Any) -> list[Section]:
    from steerlab.steering.calibration import steering_summary

    truth_results = steering["truth"]
    text = steering_summary(truth_results, "mass-mean (difference-of-means)", "true", "false")
    if truth_results.get("chosen", True) is not None:
        text += (" Alpha and layer were chosen on half of the held-out cities; the flips are on the other half. "
                 "The figure shows every (layer, alpha) of the calibration sweep on the efficacy-KL plane: "
                 "what more flips would cost in damage to neutral text, and what a random direction of the "
                 "same norm does at the same settings.")
    sections = [Section("Steering with the truth direction", [text],
                        tables=[steering["truth_examples"]] if steering["truth_examples"] else [],
                        figures=[truth.sweep.figure()])]
    sentiment = steering["sentiment"]
    if sentiment.get("chosen", True) is None:
        paragraph = (f"No CAA (layer, alpha) kept KL on neutral text within {sentiment['kl_budget']} nats per token.")
    else:
        reached = ("the smallest setting that turns" if sentiment["qualified"] else
                   "the best setting within the KL budget (the target was not reached); it turns")
        paragraph = (
            f"A CAA vector from {sentiment['pairs']} review pairs at layer {sentiment['layer']}, alpha = "
            f"{sentiment['alpha']:g} x the mean difference: {reached} {sentiment['calibration_flip']:.0%} of the "
            f"calibration prompts' next adjective from negative to positive (target {sentiment['target']:.0%}), "
            f"with KL on neutral text {sentiment['kl_neutral']:.3f} nats per token (budget {sentiment['kl_budget']}; a "
            f"random direction of the same norm: {sentiment['calibration_control_flip']:.0%}, KL "
            f"{sentiment['control_kl_neutral']:.3f}). On other review prompts, positive adjectives go from "
            f"{sentiment['positive_rate_unsteered']:.0%} to {sentiment['positive_rate_plus']:.0%} of the generated "
            f"words (the random direction: {sentiment['positive_rate_control']:.0%}), negative ones at -alpha from "
            f"{sentiment['negative_rate_unsteered']:.0%} to {sentiment['negative_rate_minus']:.0%} (each completion "
            "is 'adjective .', so 50% means every completion).")
    sections.append(Section("Steering sentiment", [paragraph], tables=[sentiment.get("examples", [])],
                            figures=[sentiment_sweep.figure()]))
    return sections


def _held_out_figure(accuracy: list[float]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(x=list(range(len(accuracy))), y=accuracy, mode="lines+markers", name="RaptorProbe"))
    figure.add_hline(y=0.5, line=dict(dash="dot", color="gray"), annotation_text="chance")
    return figure.update_layout(title="Held-out cities: RaptorProbe accuracy by layer", xaxis_title="layer",
                                yaxis_title="accuracy", yaxis_range=[0.4, 1.02], template="plotly_white", height=360)

"""``steerlab run CONFIG``: capture -> probes -> steering -> report, on any model and labelled dataset.

Each stage is a function of its own (``probe_stage``, ``steering_stage``), writing its part of
``metrics.json`` and its report sections; ``steerlab probe`` runs the first stages only and
``steerlab report DIR`` re-renders the page from the saved sections.

``metrics.json`` schema (version 1):

* ``config``: the validated config; ``model``: name, n_layers, d_model;
  ``data``: dataset name, n_train, n_test;
* ``probes``: ``sweep`` (rows: layer, method, accuracy, auroc, ece, stability, C, on a group
  split of the training data), ``held_out`` (rows: method, layer, accuracy, auroc: every
  method fit on all training rows, scored on the test rows), ``best_layer`` per method;
* ``steering``: the direction, the chosen layer and alpha (x the layer's median token norm) on
  half of the test rows under ``[steering] kl_budget`` (KL on neutral text, default 0.1 nats per
  token; ``qualified`` False when no setting reached the target within it, and the setting is
  then the best within the budget), flip rates on the other half, the same-norm random
  control's at the same alpha, KL and perplexity on neutral text, and the ``sweep`` rows (the
  efficacy-KL frontier of the report's figure); or ``{"skipped": reason}``;
* with a ``[hallucination]`` section, ``hallucination`` (schema in
  :mod:`steerlab.pipeline.hallucination_stage`); with ``[sae]``, ``sae`` (see
  :mod:`steerlab.pipeline.sae_stage`);
* ``timings`` (seconds per stage), ``versions``.

Example:
    >>> from steerlab.pipeline.config import parse_config
    >>> from steerlab.pipeline.run import run_pipeline
    >>> config = parse_config({"data": {"dataset": "demo/cities"}, "probes": {"methods": ["diff_means"]},
    ...                        "steering": {"alphas": [1.0]}})
    >>> metrics = run_pipeline(config, out="/tmp/steerlab-doctest-run", overwrite=True, progress=False)
    >>> sorted(metrics["probes"]["best_layer"])
    ['diff_means']
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steerlab.pipeline.config import ConfigError, RunConfig
from steerlab.output_folder import check_output, staged_output
from steerlab.pipeline.output import StageClock, json_ready, versions, write_json
from steerlab.pipeline.progress import StepBar
from steerlab.report.html import Section

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelAdapter


def load_run_data(config: RunConfig) -> tuple[Any, Any]:
    """The (train, test) ConceptDatasets: the built-in splits, or a group split of the user's file."""
    from steerlab.datasets import from_csv, from_jsonl, load, split_by_group

    data = config.data
    if data.dataset is not None:
        train, test = load(data.dataset, split="train"), load(data.dataset, split="test")
    else:
        path = data.file
        reader = from_csv if path.endswith(".csv") else from_jsonl
        full = reader(path, text_column=data.text_column, label_column=data.label_column,
                      group_column=data.group_column, domain=data.concept)
        train, test = (split_by_group(full, part, test_share=data.test_share, seed=0) for part in ("train", "test"))
    if not hasattr(train, "labels"):
        raise ConfigError(f"{config.source}: [data] {data.dataset!r} has no labels (a QA set?): pick a labelled "
                          "concept dataset such as demo/cities or demo/sentiment.")
    for part in (train, test):
        if len(part) == 0 or len(set(part.labels.tolist())) < 2:
            raise ConfigError(f"{config.source}: [data] after the group split (test_share={data.test_share}, "
                              f"{len(set(train.groups) | set(test.groups))} groups) the {part.split} part has "
                              f"{len(part)} rows and labels {sorted(set(part.labels.tolist()))}: both parts need both "
                              "classes. Add rows or groups, or change test_share.")
    return _with_verdicts(train, config), _with_verdicts(test, config)


def _with_verdicts(test: Any, config: RunConfig) -> Any:
    """Attach verdict prompts from ``[steering] verdict_suffix / verdict_words`` when configured."""
    steering = config.steering
    if steering.verdict_suffix is not None:
        prompts = [text + steering.verdict_suffix for text in test.texts]
        return dataclasses.replace(test, verdict_prompts=prompts, verdict_words=tuple(steering.verdict_words))
    if steering.direction != "none" and test.verdict_prompts is None:
        raise ConfigError(f"{config.source}: [steering] {test.name!r} has no verdict prompts to measure steering on. "
                          "Set verdict_suffix and verdict_words (e.g. \" this is\" and [\"true\", \"false\"]), "
                          "or direction = \"none\" to skip steering.")
    return test


def probe_stage(acts_train: Any, acts_test: Any, train: Any, test: Any, config: RunConfig, progress: bool = False
                ) -> tuple[dict[str, Any], list[Section], dict[str, Any]]:
    """Sweep every method over layers, then fit each on all training rows and score held-out rows.

    Returns ``(metrics, sections, {method: fitted probe})``.
    """
    from steerlab.probes import probe_sweep
    from steerlab.probes.figures import layer_metric_figure
    from steerlab.probes.metrics import auroc
    from steerlab.probes.sweep import make_probe

    methods = config.probes.methods
    bar = StepBar("probes", [f"sweep {m}" for m in methods] + [f"fit {m} on all training rows" for m in methods],
                  enabled=progress)
    records = []
    for method in methods:  # one method at a time, for the bar: the split depends on labels, groups and seed only
        records += probe_sweep(acts_train, train.labels, methods=[method], groups=train.groups,
                         stability_runs=config.probes.stability_runs).to_records()
        bar.advance()
    probes, held_out = {}, []
    test_values = acts_test.values.numpy()
    for method in methods:
        name, probe = make_probe(method)
        probes[name] = probe.fit(acts_train, train.labels, groups=train.groups)
        scores = probe.decision_function(test_values)  # [n_test, n_layers]
        for slot, layer in enumerate(acts_train.layers):
            held_out.append({"method": name, "layer": layer,
                             "accuracy": float(np.mean((scores[:, slot] > 0) == (test.labels == 1))),
                             "auroc": auroc(test.labels, scores[:, slot])})
        bar.advance()
    best_layer = {m: max((r for r in held_out if r["method"] == m), key=lambda r: r["accuracy"])["layer"]
                  for m in probes}
    metrics = {"sweep": records, "held_out": held_out, "best_layer": best_layer}
    best = ", ".join(f"{m} layer {layer} ({_row(held_out, m, layer)['accuracy']:.2f})" for m, layer in best_layer.items())
    section = Section(
        f"Where the {train.domain} concept lives",
        [f"Probes on {config.capture.position!r} activations at {config.capture.site}, every layer, trained on "
         f"{len(train)} texts of {train.name} and tested on {len(test)} held-out ones. Best held-out accuracy: "
         f"{best}. The sweep below is on a group split of the training texts and adds calibration and the "
         "directional stability of each method (RAPTOR)."],
        figures=[layer_metric_figure(held_out, "accuracy", "Held-out accuracy by layer"),
                 layer_metric_figure(records, "stability", "Directional stability by layer (RAPTOR)")])
    return metrics, [section], probes


def _row(rows: list[dict[str, Any]], method: str, layer: int) -> dict[str, Any]:
    return next(r for r in rows if r["method"] == method and r["layer"] == layer)


def steering_stage(adapter: ModelAdapter, probe: Any, test: Any, config: RunConfig, progress: bool = True
                   ) -> tuple[dict[str, Any], list[Section], Any]:
    """Calibrate (layer, alpha) on half the test rows, report flips and controls on the other half."""
    from steerlab.datasets import split_by_group
    from steerlab.steering.calibration import calibrate_truth_steering, steering_summary
    from steerlab.sites import resolve_layer

    steering = config.steering
    calibration = split_by_group(test, "train", test_share=0.5, seed=0)
    evaluation = split_by_group(test, "test", test_share=0.5, seed=0)
    neutral = _neutral_texts(config, test)
    layers = None if steering.layers == "all" else [resolve_layer(layer, adapter.n_layers) for layer in steering.layers]
    bar = StepBar("steering", ["calibrate (layer, alpha), then held-out flips"], enabled=progress)
    result = calibrate_truth_steering(adapter, probe, calibration, evaluation, neutral, alphas=steering.alphas,
                                      layers=layers,
                                      target=steering.target, kl_budget=steering.kl_budget,
                                      control_max=steering.control_max, progress=progress)
    bar.advance()
    metrics = {"direction": steering.direction, **result.results, "sweep": result.sweep.to_records()}
    positive, negative = test.verdict_words
    metrics["nothing_to_flip"] = all(row["efficacy"] is None or math.isnan(row["efficacy"]) for row in metrics["sweep"])
    if metrics["nothing_to_flip"]:
        text = (f"Steering was not measured: unsteered, the model judges every calibration statement labelled false "
                f"{positive!r}, so there is no {negative!r} verdict to flip. The verdict readout (statement + "
                f"verdict_suffix, then {positive!r} vs {negative!r}) does not separate the classes on this model: "
                "choose a verdict_suffix / verdict_words the model answers both ways.")
    else:
        text = steering_summary(result.results, steering.direction, positive, negative)
        if not result.qualified:
            text += (" To reach the target, try other layers, positions or verdict prompts; a larger kl_budget "
                     "buys efficacy with damage to everything else the model does (the frontier below).")
    section = Section("Steering with the probe direction", [text], figures=[result.sweep.figure()])
    return metrics, [section], result.vector


def _neutral_texts(config: RunConfig, test: Any) -> list[str]:
    from steerlab.datasets import available, load, read_lines

    source, count = config.steering.neutral, config.steering.neutral_count
    if source is None:
        return list(test.texts[:count])
    if source in available():
        return list(load(source, split="test").texts[:count])
    return read_lines(source)[:count]


def load_hallucination_data(config: RunConfig) -> tuple[Any, Any]:
    """``[hallucination]``'s (train, test) questions: demo/qa, or a group split of the configured CSV."""
    settings = config.hallucination
    return qa_splits(settings.file, settings.question_column,
                     settings.answer_column, settings.group_column, settings.test_share)


def qa_splits(file: str | os.PathLike | None, question_column: str = "question", answer_column: str = "answer",
              group_column: str | None = None, test_share: float = 0.5) -> tuple[Any, Any]:
    """(train, test) QA sets: the built-in demo/qa when ``file`` is None, else a group split of the CSV."""
    from steerlab.datasets import load, qa_from_csv, split_by_group

    if file is None:
        return load("demo/qa", split="train"), load("demo/qa", split="test")
    qa = qa_from_csv(file, question_column, answer_column, group_column)
    train, test = (split_by_group(qa, part, test_share=test_share, seed=0) for part in ("train", "test"))
    if not len(train) or not len(test):
        raise ValueError(f"{file}: the group split left an empty part ({len(train)} train, {len(test)} test "
                         "questions): add questions or groups, or change the test share.")
    return train, test


def _check_layers(adapter: ModelAdapter, config: RunConfig) -> None:
    """Layer numbers in the config against the model, before anything runs."""
    from steerlab.sites import resolve_layer

    keys = [("[capture] layers", layer) for layer in ([] if config.capture.layers == "all" else config.capture.layers)]
    if config.sae is not None and config.sae.layer is not None:
        keys.append(("[sae] layer", config.sae.layer))
    steering_layers = [] if config.steering.layers == "all" else config.steering.layers
    keys += [("[steering] layers", layer) for layer in steering_layers]
    for key, layer in keys:
        try:
            resolve_layer(layer, adapter.n_layers)
        except ValueError:
            raise ConfigError(f"{config.source}: {key} = {layer} is out of range: {adapter.name} has "
                              f"{adapter.n_layers} layers (0..{adapter.n_layers - 1}, or -1 for the last).") from None
    if config.capture.layers != "all":
        captured = {resolve_layer(layer, adapter.n_layers) for layer in config.capture.layers}
        missing = [layer for layer in steering_layers if resolve_layer(layer, adapter.n_layers) not in captured]
        if missing:
            raise ConfigError(f"{config.source}: [steering] layers {missing} are not captured: add them to "
                              "[capture] layers, or steer at captured layers.")


def run_pipeline(config: RunConfig, out: str | os.PathLike | None = None, *, overwrite: bool = False,
                 progress: bool = True, steer: bool = True) -> dict[str, Any]:
    """Run every stage; writes ``metrics.json``, ``artifacts/``, ``sections/`` and ``report.html`` to ``out``."""
    import torch

    import steerlab

    clock = StageClock()
    # everything that can be wrong with the inputs fails here, before the output folder is touched
    out = check_output(out or config.output.dir, overwrite)
    train, test = load_run_data(config)
    qa = load_hallucination_data(config) if steer and config.hallucination is not None else None
    adapter = steerlab.load_model(config.model.name, backend=config.model.backend, device=config.model.device,
                                  dtype=None if config.model.dtype is None else getattr(torch, config.model.dtype))
    _check_layers(adapter, config)
    with staged_output(out, overwrite) as work:  # swapped in for `out` only if every stage succeeds
        return _run_stages(work, adapter, config, train, test, qa, clock, progress=progress, steer=steer)


def _run_stages(out: Path, adapter: ModelAdapter, config: RunConfig, train: Any, test: Any, qa: Any, clock: StageClock, *,
                progress: bool, steer: bool) -> dict[str, Any]:
    """The stages of :func:`run_pipeline`, writing into ``out`` (the staging folder)."""
    import steerlab
    from steerlab.report.html import write_report
    from steerlab.report.run_info import run_info_section
    from steerlab.report.sections_file import save_page, save_sections

    capture = config.capture
    layers = None if capture.layers == "all" else capture.layers
    acts_train, acts_test = (steerlab.capture(adapter, part.texts, layers=layers, site=capture.site,
                                              position=capture.position, batch_size=capture.batch_size,
                                              progress=progress and part is train) for part in (train, test))
    clock.lap("capture")
    probe_metrics, sections, probes = probe_stage(acts_train, acts_test, train, test, config, progress=progress)
    for name, probe in probes.items():
        probe.save(out / "artifacts" / f"probe_{name}")
    save_sections(out, "probes", sections)
    clock.lap("probes")
    metrics: dict[str, Any] = {
        "schema": 1, "config": dataclasses.asdict(config),
        "model": {"name": adapter.name, "n_layers": adapter.n_layers, "d_model": adapter.d_model},
        "data": {"name": train.name, "n_train": len(train), "n_test": len(test),
                 "test_majority_share": float(max(np.mean(test.labels == 1), np.mean(test.labels != 1)))},
        "probes": probe_metrics,
    }
    if steer and config.steering.direction != "none":
        steering_metrics, steering_sections, vector = steering_stage(
            adapter, probes[config.steering.direction], test, config, progress)
        if vector is not None:
            vector.save(out / "artifacts" / "steering_vector")
        save_sections(out, "steering", steering_sections)
        sections += steering_sections
        metrics["steering"] = steering_metrics
        clock.lap("steering")
    else:
        metrics["steering"] = {"skipped": "direction = \"none\"" if steer else "probe stage only"}
    if steer and config.hallucination is not None:
        from steerlab.pipeline.hallucination_stage import run_hallucination_stage

        metrics["hallucination"], more = run_hallucination_stage(
            adapter, progress=progress, artifacts=out / "artifacts", data=qa,
            max_new_tokens=config.hallucination.max_new_tokens)
        save_sections(out, "hallucination", more)
        sections += more
        clock.lap("hallucination")
    if steer and config.sae is not None:
        from steerlab.pipeline.sae_stage import run_sae_stage

        metrics["sae"], more = run_sae_stage(adapter, config, train, test, _neutral_texts(config, test), out,
                                         progress=progress)
        save_sections(out, "sae", more)
        sections += more
        clock.lap("sae")
    metrics.update(timings=clock.timings, versions=versions())
    write_json(out / "metrics.json", metrics)
    # titled for the command that ran: `steerlab probe` runs the probe stage only
    command = "steerlab run" if steer else "steerlab probe"
    title = f"{command}: {train.name} on {adapter.name}"
    intro = (f"Config: {config.source}. " if config.source != command else "") + \
        "Metrics: metrics.json; probes and vectors: artifacts/."
    run_section = run_info_section(clock.timings, metrics["versions"])
    save_sections(out, "run", [run_section])
    save_page(out, title, intro)
    write_report(out / "report.html", title, sections + [run_section], intro=intro, metrics=json_ready(metrics))
    return metrics

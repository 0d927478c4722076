"""The SAE stage of ``steerlab demo``: the same concepts through sparse-autoencoder features.

``run_sae_stage(adapter)`` loads the SAEs shipped in ``assets/demo-sae`` and returns
``(metrics, sections)``: a JSON-able dict (the ``sae`` key of ``metrics.json``) and
report sections. On the primary SAE (``load_sae("demo")``) it measures:

* quality of every shipped SAE on held-out demo text (explained variance, L0, dead
  latents, CE loss spliced in / recovered against mean ablation) and a check that editing
  with the error term kept, through an identity edit, leaves the model unchanged;
* for truth (demo/cities) and sentiment: alignment of RaptorProbe / diff-means with the
  decoder rows, latent AUROCs, k-sparse probes against RaptorProbe (k chosen by 5-fold
  cross-validation on the train split), input and output scores, and the AxBench-style
  comparison (detection AUROC, steering at matched KL) of supervised directions and three
  SAE feature selections; every conclusion in the report text is computed from those rows;
* which features correspond to world variables (countries, sentiment, topic, truth; in-sample AUROCs);
* a latent edit through :func:`steerlab.sae.sae_edit` on review prompts.

metrics schema: ``sae_name``, ``hook_name``, ``quality`` (rows per shipped SAE),
``error_term_max_logit_diff``, ``concepts`` (per concept: ``comparison`` rows,
``baseline_efficacy``, ``kl_budget``, ``alignment``, ``k_sparse``, ``k_sparse_chosen``,
``raptor_test_auroc``, ``top_features``, ``detect_vs_steer``), ``world_variables`` (rows + ``summary``),
``edit_examples``, ``timings``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import numpy as np
import torch

from steerlab.pipeline.output import json_ready

EVAL_LINES = 300


def run_sae_stage(adapter: Any, progress: bool = True) -> tuple[dict, list]:
    """Run the SAE comparison on the demo model; returns ``(metrics, sections)`` (see the module doc)."""
    from steerlab.datasets import load
    from steerlab.sae import load_sae, shipped_demo_saes
    from steerlab.sae.compare import compare_methods
    from steerlab.sae.concepts import sentiment_concept, truth_concept
    from steerlab.sae.quality import sae_quality
    from steerlab.sae.training import demo_corpus
    from steerlab.sae.world_features import summarize, world_variable_table

    timings: dict[str, float] = {}
    sae = load_sae("demo", model=adapter)
    with _timed(timings, "quality", progress):
        eval_texts = demo_corpus(EVAL_LINES, seed=999)
        quality = []
        for name in shipped_demo_saes():
            other = sae if name == _name_of(sae) else load_sae(f"demo/{name}", model=adapter)
            quality.append({"name": name, "architecture": other.cfg.architecture(),
                            "hook_name": other.cfg.metadata.hook_name, "d_sae": other.cfg.d_sae,
                            **sae_quality(adapter, other, eval_texts)})
        error_term = _error_term_check(adapter, sae, eval_texts[:32])
    with _timed(timings, "concepts", progress):
        neutral = load("demo/topic", split="test").texts[:64]
        comparisons = [compare_methods(adapter, sae, concept, neutral)  # compare.KL_BUDGET
                       for concept in (truth_concept(adapter), sentiment_concept(adapter))]
        concepts = {result["concept"]: _concept_metrics(sae, result) for result in comparisons}
    with _timed(timings, "world variables", progress):
        world_rows = world_variable_table(adapter, sae)
    with _timed(timings, "feature edit", progress):
        edits = _edit_examples(adapter, sae, concepts["sentiment"]["comparison"])

    metrics = {"sae_name": _name_of(sae), "hook_name": sae.cfg.metadata.hook_name, "d_sae": sae.cfg.d_sae,
               "quality": quality, "error_term_max_logit_diff": error_term,
               "concepts": {name: {k: v for k, v in c.items() if k != "_plots"} for name, c in concepts.items()},
               "world_variables": {"rows": world_rows, "summary": summarize(world_rows)}, "edit_examples": edits,
               "timings": timings}
    sections = _sections(metrics, concepts, comparisons)
    return json_ready(metrics), sections


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str, progress: bool) -> Iterator[None]:
    """Record the block's wall time under ``stage``."""
    started = time.perf_counter()
    yield
    timings[stage] = round(time.perf_counter() - started, 2)
    if progress:
        print(f"  sae stage: {stage} ({timings[stage]} s)")


def _concept_metrics(sae: Any, result: dict) -> dict[str, Any]:
    """One concept's metrics from :func:`compare_methods`' result (its ``features`` are consumed)."""
    from steerlab.sae.alignment import decoder_cosines, reconstruction_curve
    from steerlab.sae.compare import detect_vs_steer_summary
    from steerlab.sae.feature_probes import k_sparse_curve

    features = result.pop("features")
    train_labels, test_labels = features["train_labels"], features["test_labels"]
    inputs, outputs = features["input_score"], features["output_score"]
    directions = {"RaptorProbe": features["raptor"].coef_, "diff-means": features["diff_means"].coef_}
    curve = k_sparse_curve(features["z_train"], train_labels, features["z_test"], test_labels)
    return {
        **{k: v for k, v in result.items() if k != "methods"},
        "comparison": result["methods"],
        "raptor_test_auroc": next(r["detection_auroc"] for r in result["methods"] if r["method"] == "raptor"),
        "alignment": {name: {"top": _top(decoder_cosines(sae, d).numpy(), 5),
                             "reconstruction": reconstruction_curve(sae, d)} for name, d in directions.items()},
        "k_sparse": curve,
        "k_sparse_chosen": _chosen_k(features, curve),
        "detect_vs_steer": detect_vs_steer_summary(result),
        "top_features": _feature_table(features, inputs, outputs),
        "input_output_correlation": _spearman(inputs, outputs),
        "live_features": int(features["live"].sum()),
        "_plots": {"cosines": decoder_cosines(sae, directions["diff-means"]).numpy(), "inputs": inputs,
                   "outputs": outputs},
    }


def _chosen_k(features: dict, curve: list[dict]) -> dict[str, Any]:
    """The k chosen by cross-validation on the train split (folds keep entities whole), with its held-out
    score and a flag when the two disagree (:func:`steerlab.sae.feature_probes.chosen_k_held_out`)."""
    import warnings

    from steerlab.sae.feature_probes import chosen_k_held_out

    with warnings.catch_warnings():  # the flag goes into the report instead
        warnings.simplefilter("ignore", UserWarning)
        chosen = chosen_k_held_out(features["z_train"], features["train_labels"], features["z_test"],
                                   features["test_labels"], ks=[row["k"] for row in curve],
                                   groups=features["train_groups"])
    return {"k": chosen["k"], "cv_folds": chosen["folds"], "train_cv_auroc": chosen["cv_auroc"],
            "test_auroc": chosen["test_auroc"], "test_accuracy": chosen["test_accuracy"],
            "cv_held_out_agree": chosen["agrees"], "flag": chosen["flag"]}


def _name_of(sae: Any) -> str:
    return f"{sae.cfg.architecture()}-{sae.cfg.metadata.hook_name}"


def _top(cosines: np.ndarray, n: int) -> list[dict[str, Any]]:
    order = np.argsort(-np.abs(cosines))[:n]
    return [{"feature": int(i), "cosine": float(cosines[i])} for i in order]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    keep = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[keep], b[keep]).statistic) if keep.sum() > 2 else float("nan")


def _feature_table(features: dict, inputs: np.ndarray, outputs: np.ndarray, n: int = 5) -> list[dict[str, Any]]:
    """The top features by train AUROC and by output score, with all their scores."""
    chosen = list(dict.fromkeys([*np.argsort(-features["train_auroc"])[:n].tolist(),
                                 *np.argsort(-np.nan_to_num(outputs, nan=-np.inf))[:n].tolist()]))
    return [{"feature": int(f), "train_auroc": float(features["train_auroc"][f]),
             "test_auroc": float(features["test_auroc"][f]), "input_score": float(inputs[f]),
             "output_score": float(outputs[f]), "cosine_diff_means": float(features["cosine_diff_means"][f])}
            for f in chosen]


@torch.no_grad()
def _error_term_check(adapter: Any, sae: Any, texts: list[str]) -> float:
    """max |logits(identity edit, error kept) - logits(clean)|: the hook runs but must change nothing (~0)."""
    from steerlab.sae import sae_edit

    batch = adapter.tokenize(texts)
    clean = adapter.forward(batch)
    with sae_edit(adapter, sae, {0: lambda a: a}):  # encode + decode run; the edit's delta is 0
        spliced = adapter.forward(batch)
    return float((spliced - clean).abs().max())


def _edit_examples(adapter: Any, sae: Any, comparison: list[dict]) -> list[dict[str, str]]:
    """Generations on negative-context review prompts with the best output-score sentiment feature set high."""
    from steerlab.datasets import load
    from steerlab.sae import sae_edit
    from steerlab.sae.activations import latents
    from steerlab.world import templates as tp

    feature = next(r["feature"] for r in comparison if r["method"] == "sae_output")
    prompts = [f"we {verb} the {thing} , it was" for verb, thing in zip(tp.NEGATIVE_VERBS * 2, tp.REVIEW_THINGS[:6])]
    reviews = load("demo/sentiment", split="train").texts[:200]
    peak = float(latents(adapter, sae, reviews, position="all")[:, feature].max())
    value = 2 * peak  # twice its largest activation on reviews; 4x breaks the model ("it it")
    plain = adapter.generate(prompts, max_new_tokens=2)
    with sae_edit(adapter, sae, {feature: value}):
        edited = adapter.generate(prompts, max_new_tokens=2)
    return [{"prompt": p, "unedited": a, f"feature {feature} := {value:.1f} (error kept)": b}
            for p, a, b in zip(prompts, plain, edited)]


def _sections(metrics: dict, concepts: dict, comparisons: list) -> list:
    from steerlab.report import Section
    from steerlab.sae import figures

    quality = metrics["quality"]
    primary = next(row for row in quality if row["name"] == metrics["sae_name"])
    sections = [Section(
        "SAE: quality of the shipped sparse autoencoders",
        [f"SAEs trained with sae-lens' SAETrainer on the demo model's own activations (assets/demo-sae). The primary "
         f"one, {metrics['sae_name']} ({metrics['d_sae']} latents), explains {primary['explained_variance']:.1%} of the "
         f"variance of held-out text with {primary['l0']:.0f} active latents per token; splicing it in raises the "
         f"next-token loss by {primary['ce_increase']:.3f} nats ({primary['ce_loss_recovered']:.1%} of the loss "
         f"recovered against mean ablation of the site; sae-lens' CE loss score ablates with zeros instead); "
         f"{primary['dead_fraction']:.0%} of its latents never fire on that text.",
         f"Editing latents while keeping the SAE's error term: with an identity edit the logits move by at most "
         f"{metrics['error_term_max_logit_diff']:.1e}, so any change comes from the edit alone."],
        tables=[[{k: row[k] for k in ("name", "explained_variance", "l0", "dead_fraction", "ce_increase",
                                       "ce_loss_recovered")} for row in quality]],
        figures=[figures.quality_figure(quality)])]
    for name, concept in concepts.items():
        plots = concept["_plots"]
        rows = [{"method": r["method"], "feature": "" if r["feature"] is None else r["feature"],
                 "detection AUROC": r["detection_auroc"], "cos with diff-means": r["cosine_with_diff_means"],
                 "alpha (x median norm)": r["alpha"], "KL": r["kl"],
                 "KL matched": "yes" if r["matched"] else "NO (not comparable)", "efficacy": r["efficacy"]}
                for r in concept["comparison"]]
        chosen = concept["k_sparse_chosen"]
        one = concept["k_sparse"][0]
        recon = concept["alignment"]["diff-means"]["reconstruction"]
        sections.append(Section(
            f"SAE features vs supervised directions: {name}",
            [f"Detection: RaptorProbe on raw activations reaches held-out AUROC {concept['raptor_test_auroc']:.3f}; a "
             f"1-sparse probe on SAE latents {one['auroc']:.3f}; a k-sparse one with k = {chosen['k']} (chosen by "
             f"{chosen['cv_folds']}-fold cross-validation on the train split, CV AUROC "
             f"{chosen['train_cv_auroc']:.3f}) {chosen['test_auroc']:.3f}."
             + (f" FLAG: {chosen['flag']}" if chosen["flag"] else ""),
             f"Alignment: the diff-means direction's best decoder row has cosine "
             f"{concept['alignment']['diff-means']['top'][0]['cosine']:.2f}; {recon[0]['r2']:.0%} of it is reconstructed "
             f"by 1 feature, {recon[min(3, len(recon) - 1)]['r2']:.0%} by {recon[min(3, len(recon) - 1)]['k']}.",
             f"Steering at matched KL = {concept['kl_budget']} nats/token on neutral text ({concept['efficacy_name']}; "
             f"unsteered {concept['baseline_efficacy']:.2f}). {_capitalized(concept['detect_vs_steer'])} "
             f"Input and output scores of the features correlate with "
             f"Spearman {concept['input_output_correlation']:.2f} (Arad et al.: they rarely coincide)."],
            tables=[rows, concept["top_features"]],
            figures=[figures.alignment_bars(plots["cosines"], f"{name}: decoder rows best aligned with diff-means"),
                     figures.input_output_scatter(plots["inputs"], plots["outputs"],
                                                  f"{name}: input vs output score of every feature")]))
    sections.append(Section(
        "Detect vs steer",
        ["Each method's held-out detection AUROC against its steering efficacy at the same KL on neutral text "
         "(AxBench's lesson: a direction can detect well and steer badly, and the reverse). Efficacy counts only "
         "prompts the unsteered model gets the other way, so it starts at 0. Directions are added at every token "
         "but the first (the attention sink).",
         *[_capitalized(c["detect_vs_steer"]) for c in concepts.values()]],
        figures=[figures.detection_steering_scatter(comparisons),
                 figures.k_sparse_figure({n: c["k_sparse"] for n, c in concepts.items()},
                                         {n: c["raptor_test_auroc"] for n, c in concepts.items()}),
                 figures.reconstruction_figure({f"{n} diff-means": c["alignment"]["diff-means"]["reconstruction"]
                                                for n, c in concepts.items()})]))
    world = metrics["world_variables"]
    sections.append(Section(
        "Which SAE features are world variables?",
        ["The demo world is known, so each country, sentiment, topic and truth value can be matched to the feature "
         "that best detects it (one-vs-rest AUROC at the answer slot of 'where is X ?', at the country token, or at "
         "the last token of a sentence). The AUROCs are in-sample: the best of "
         f"{metrics['d_sae']} latents is chosen and scored on the same texts, so they are optimistic; the "
         "runner-up column shows how far ahead the chosen feature is."],
        tables=[world["summary"], [r for r in world["rows"] if r["variable"] != "country (answer slot)"][:30]]))
    sections.append(Section(
        "Editing one latent (error term kept)",
        ["The best output-score sentiment feature set to twice its largest activation on reviews, at every token of "
         "negative-context review prompts, with the SAE error term kept."],
        tables=[metrics["edit_examples"]]))
    return sections


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]

"""The SAE stage of ``steerlab demo``: the same concepts through sparse-autoencoder features.

``run_demo_sae_stage(adapter)`` loads the SAEs shipped in ``assets/demo-sae`` and returns
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
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from steerlab.pipeline import sae_report
from steerlab.pipeline.output import json_ready
from steerlab.pipeline.progress import StepBar

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelAdapter

EVAL_LINES = 300


def run_demo_sae_stage(adapter: ModelAdapter, progress: bool = True) -> tuple[dict, list]:
    """Run the SAE comparison on the demo model; returns ``(metrics, sections)`` (see the module doc)."""
    bar = StepBar("sae stage", ["load the SAE", "quality", "concepts: truth", "concepts: sentiment",
                                "world variables", "feature edit"], enabled=progress)
    from steerlab.datasets import load
    from steerlab.sae import load_sae, shipped_demo_saes
    from steerlab.sae.compare import compare_methods
    from steerlab.sae.concepts import sentiment_concept, truth_concept
    from steerlab.sae.quality import sae_quality
    from steerlab.sae.training import demo_corpus
    from steerlab.sae.world_features import summarize, world_variable_table

    timings: dict[str, float] = {}
    sae = load_sae("demo", model=adapter)
    bar.advance()
    with _timed(timings, "quality", bar):
        eval_texts = demo_corpus(EVAL_LINES, seed=999)
        quality = []
        for name in shipped_demo_saes():
            other = sae if name == _name_of(sae) else load_sae(f"demo/{name}", model=adapter)
            quality.append({"name": name, "architecture": other.cfg.architecture(),
                            "hook_name": other.cfg.metadata.hook_name, "d_sae": other.cfg.d_sae,
                            **sae_quality(adapter, other, eval_texts)})
        error_term = _error_term_check(adapter, sae, eval_texts[:32])
    neutral = load("demo/topic", split="test").texts[:64]
    comparisons, concepts = [], {}
    for name, make_concept in (("truth", truth_concept), ("sentiment", sentiment_concept)):
        with _timed(timings, f"concepts: {name}", bar):
            comparisons.append(compare_methods(adapter, sae, make_concept(adapter), neutral))  # compare.KL_BUDGET
            concepts[comparisons[-1]["concept"]] = _concept_metrics(sae, comparisons[-1])
    timings["concepts"] = round(timings.pop("concepts: truth") + timings.pop("concepts: sentiment"), 2)
    with _timed(timings, "world variables", bar):
        world_rows = world_variable_table(adapter, sae)
    with _timed(timings, "feature edit", bar):
        edits = _edit_examples(adapter, sae, concepts["sentiment"]["comparison"])

    metrics = {"sae_name": _name_of(sae), "hook_name": sae.cfg.metadata.hook_name, "d_sae": sae.cfg.d_sae,
               "quality": quality, "error_term_max_logit_diff": error_term,
               "concepts": {name: {k: v for k, v in c.items() if k != "_plots"} for name, c in concepts.items()},
               "world_variables": {"rows": world_rows, "summary": summarize(world_rows)}, "edit_examples": edits,
               "timings": timings}
    sections = sae_report.sections(metrics, concepts, comparisons)
    return json_ready(metrics), sections


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str, bar: StepBar) -> Iterator[None]:
    """Record the block's wall time under ``stage``; the bar names the step while it runs."""
    started = time.perf_counter()
    yield
    timings[stage] = round(time.perf_counter() - started, 2)
    bar.advance()


def _concept_metrics(sae: SAE, result: dict) -> dict[str, Any]:
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


def _name_of(sae: SAE) -> str:
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
def _error_term_check(adapter: ModelAdapter, sae: SAE, texts: list[str]) -> float:
    """max |logits(identity edit, error kept) - logits(clean)|: the hook runs but must change nothing (~0)."""
    from steerlab.sae import sae_edit

    batch = adapter.tokenize(texts)
    clean = adapter.forward(batch)
    with sae_edit(adapter, sae, {0: lambda a: a}):  # encode + decode run; the edit's delta is 0
        spliced = adapter.forward(batch)
    return float((spliced - clean).abs().max())


def _edit_examples(adapter: ModelAdapter, sae: SAE, comparison: list[dict]) -> list[dict[str, str]]:
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

"""The demo SAE stage's report sections: every sentence formats numbers the stage computed.

Split from :mod:`steerlab.pipeline.demo_sae_stage` (which computes the metrics), as
:mod:`steerlab.pipeline.hallucination_report` is from the hallucination stage, so the prose can be
read and changed on its own.
"""

from __future__ import annotations


def sections(metrics: dict, concepts: dict, comparisons: list) -> list:
    """The SAE stage's report sections from its ``metrics``, per-concept results (with their ``_plots``) and
    :func:`steerlab.sae.compare.compare_methods` results."""
    from steerlab.report import Section
    from steerlab.sae import figures

    quality = metrics["quality"]
    primary = next(row for row in quality if row["name"] == metrics["sae_name"])
    page = [Section(
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
        page.append(Section(
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
    page.append(Section(
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
    page.append(Section(
        "Which SAE features are world variables?",
        ["The demo world is known, so each country, sentiment, topic and truth value can be matched to the feature "
         "that best detects it (one-vs-rest AUROC at the answer slot of 'where is X ?', at the country token, or at "
         "the last token of a sentence). The AUROCs are in-sample: the best of "
         f"{metrics['d_sae']} latents is chosen and scored on the same texts, so they are optimistic; the "
         "runner-up column shows how far ahead the chosen feature is."],
        tables=[world["summary"], [r for r in world["rows"] if r["variable"] != "country (answer slot)"][:30]]))
    page.append(Section(
        "Editing one latent (error term kept)",
        ["The best output-score sentiment feature set to twice its largest activation on reviews, at every token of "
         "negative-context review prompts, with the SAE error term kept."],
        tables=[metrics["edit_examples"]]))
    return page


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]

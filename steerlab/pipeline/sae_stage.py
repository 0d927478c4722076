"""``steerlab run``'s optional SAE stage: the run's concept through sparse-autoencoder features.

The SAE is loaded (``[sae] path``) or trained on the run's model (``[sae] layer``, sae-lens'
trainer; saved to ``artifacts/sae``). Then, on the run's own labelled data: its quality on the
held-out texts, and the AxBench-style comparison of :func:`steerlab.sae.compare_methods`:
detection AUROC and steering efficacy (verdict flips) at matched KL on neutral text for
RaptorProbe, difference of means and the best-aligned, best-AUROC and best-output-score
features (Arad et al.), with a same-norm random direction.

``metrics["sae"]``: ``source`` (path, or the training settings), ``hook_name``, ``d_sae``,
``quality`` (explained variance, L0, dead fraction, CE increase, CE loss recovered),
``comparison`` (rows: method, feature, detection_auroc, cosine_with_diff_means, alpha, kl,
matched, efficacy), ``kl_budget``, ``summary`` (which method steers best, and does it detect).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from steerlab.pipeline.config import RunConfig
from steerlab.pipeline.progress import StepBar
from steerlab.report.html import Section

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelAdapter

QUALITY_TEXTS = 300  # held-out texts for the quality numbers


def run_sae_stage(adapter: ModelAdapter, config: RunConfig, train: Any, test: Any, neutral: Sequence[str], out: Path,
              progress: bool = False) -> tuple[dict[str, Any], list[Section]]:
    """Load or train the SAE, measure it, compare its features with the probe directions."""
    from steerlab.sae import compare_methods, load_sae, sae_quality
    from steerlab.sae.compare import detect_vs_steer_summary
    from steerlab.sae.figures import detection_steering_scatter

    settings = config.sae
    bar = StepBar("sae stage", ["load the SAE" if settings.path is not None else "train the SAE",
                                "quality on held-out texts", "compare directions at matched KL"], enabled=progress)
    if settings.path is not None:
        sae = load_sae(settings.path, model=adapter)
        source: dict[str, Any] = {"path": settings.path}
    else:
        sae = _train(adapter, config, train)
        sae.save_model(out / "artifacts" / "sae")
        source = {"trained": {"layer": settings.layer, "d_sae": settings.d_sae, "k": settings.k,
                              "steps": settings.steps, "texts": settings.texts or "the [data] training texts"},
                  "saved": "artifacts/sae"}
    bar.advance()
    quality = sae_quality(adapter, sae, list(test.texts[:QUALITY_TEXTS]))
    bar.advance()
    result = compare_methods(adapter, sae, _concept(adapter, train, test), neutral, kl_budget=settings.kl_budget)
    bar.advance()
    result.pop("features")
    summary = detect_vs_steer_summary(result)
    metrics = {"source": source, "hook_name": sae.cfg.metadata.hook_name, "d_sae": sae.cfg.d_sae, "quality": quality,
               "comparison": result["methods"], "kl_budget": settings.kl_budget, "summary": summary}
    section = Section(
        f"SAE features vs the probe directions ({sae.cfg.metadata.hook_name})",
        [f"The SAE ({sae.cfg.d_sae} latents) explains {quality['explained_variance']:.1%} of the variance of the "
         f"held-out texts' activations with {quality['l0']:.1f} active latents per token; spliced in, it raises the "
         f"next-token loss by {quality['ce_increase']:.3f} nats. Every direction below is steered to the same KL "
         f"({settings.kl_budget} nats per token on neutral text), then scored by the verdict flips it causes. {summary}"],
        tables=[result["methods"]], figures=[detection_steering_scatter([result])])
    return metrics, [section]


def _train(adapter: ModelAdapter, config: RunConfig, train: Any) -> Any:
    from steerlab.datasets import read_lines
    from steerlab.sae import train_sae

    settings = config.sae
    texts = list(train.texts) if settings.texts is None else read_lines(settings.texts)
    return train_sae(adapter, texts, layer=settings.layer, site=config.capture.site, d_sae=settings.d_sae,
                     k=settings.k, steps=settings.steps)


def _concept(adapter: ModelAdapter, train: Any, test: Any) -> Any:
    """The run's concept for :func:`compare_methods`: efficacy = the share of held-out statements judged
    with the negative verdict word that steering turns to the positive one."""
    from steerlab.sae.concepts import Concept
    from steerlab.steering.evaluation import flip_rate
    from steerlab.steering.verdicts import prompts_with_label

    positive, negative = test.verdict_words
    efficacy = flip_rate(adapter, prompts_with_label(test, 0), positive, negative, toward_positive=True)
    score_prompts = (train.verdict_prompts or list(train.texts))[:32]
    return Concept(test.domain, train, test, efficacy, f"{negative}->{positive} verdict flip rate (held-out)",
                   score_prompts, (positive,), (negative,))

"""Supervised directions vs SAE features on one concept, AxBench-style without an LLM judge.

For each method, a unit direction at the SAE's site:

* ``raptor``: RaptorProbe on the raw activations (last token of the train texts);
* ``diff_means``: difference of class means (mass-mean, "The Geometry of Truth");
* ``sae_aligned``: the SAE feature whose decoder row has the largest cosine with diff_means;
* ``sae_auroc``: the feature whose activation best detects the concept on train;
* ``sae_output``: the feature with the best output score (Arad et al.) among those that fire
  on the concept's texts (a dead latent's decoder row is a direction, not a feature);
* ``random``: a random direction (the control), its sign oriented on the TRAIN split (flipped
  if its train AUROC is below 0.5) so that the control is not handicapped by an arbitrary sign.

Detection: held-out AUROC (probe logit; projection for diff_means and random; the latent's
own activation for SAE features). Steering (Wu et al., "AxBench"): each direction is added
at every token but the first (the attention sink, which the SAE hooks and output scores also
leave alone: :data:`STEER_POSITIONS`) with the alpha that makes KL on neutral text equal a
common budget (:data:`KL_BUDGET`), then the concept's efficacy is measured. Matching KL, not
alpha, compares methods at equal damage; a row whose KL could not be brought within
:data:`KL_TOLERANCE` of the budget is flagged ``matched=False`` (and warned about).

Example:
    >>> from steerlab.sae.concepts import truth_concept
    >>> result = compare_methods(model, sae, truth_concept(model), neutral_texts)   # doctest: +SKIP
    >>> [(r["method"], round(r["detection_auroc"], 2), round(r["efficacy"], 2)) for r in result["methods"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from steerlab.probes import DiffMeans, RaptorProbe
from steerlab.probes.metrics import auroc
from steerlab.sae.activations import encode, site_activations, token_rows
from steerlab.sae.alignment import decoder_cosines
from steerlab.sae.concepts import Concept
from steerlab.sae.feature_probes import latent_aurocs
from steerlab.sae.loading import check_sae
from steerlab.sae.scores import input_scores, output_scores
from steerlab.steering.injection import steer
from steerlab.steering.metrics import kl_divergence, token_logprobs
from steerlab.steering.vector import SteeringVector

KL_BUDGET = 0.1  # nats per token on neutral text: the damage every method is allowed (stage, benchmark, notebook)
KL_TOLERANCE = 0.2  # a row is "matched" when |kl - budget| <= KL_TOLERANCE * budget
STEER_POSITIONS = (1, None)  # steer from token 1 on: token 0 is the attention sink (BOS on the demo model)
CHANCE_MARGIN = 0.05  # |AUROC - 0.5| below this reads as "does not detect"
METHODS = ("raptor", "diff_means", "sae_aligned", "sae_auroc", "sae_output", "random")


def _unit(vector: Any) -> torch.Tensor:
    vector = torch.as_tensor(np.asarray(vector), dtype=torch.float32).reshape(-1)
    return vector / vector.norm().clamp_min(1e-12)


def kl_at(model: Any, vector: SteeringVector, alpha: float, neutral_texts: Sequence[str],
          reference: list[torch.Tensor]) -> float:
    """KL(unsteered || steered) per token on neutral text with ``vector`` added at ``alpha``; raises if not finite."""
    with steer(model, vector, alpha=alpha, positions=STEER_POSITIONS):
        kl = kl_divergence(reference, token_logprobs(model, neutral_texts))
    if not math.isfinite(kl):
        raise ValueError(f"KL on neutral text is {kl} at alpha={alpha} for {vector.provenance or 'this vector'}: "
                         "the steered model produced non-finite log-probabilities. Check the direction for "
                         "NaN/inf, or lower alpha_max.")
    return kl


def alpha_for_kl(model: Any, vector: SteeringVector, kl_budget: float, neutral_texts: Sequence[str],
                 reference: list[torch.Tensor], alpha_max: float = 16.0, steps: int = 7
                 ) -> tuple[float, float, bool]:
    """``(alpha, kl, matched)``: the alpha whose KL on neutral text reaches ``kl_budget`` (doubling, then bisection).

    ``alpha`` multiplies ``vector.direction``. ``matched`` is ``|kl - kl_budget| <= KL_TOLERANCE * kl_budget``;
    it is False (with a warning) when even ``alpha_max`` stays under budget, or when KL jumps past it.
    """
    low, high = _bracket(model, vector, kl_budget, neutral_texts, reference, alpha_max)
    if high is None:
        alpha = alpha_max
    else:
        for _ in range(steps):
            middle = (low + high) / 2
            if kl_at(model, vector, middle, neutral_texts, reference) >= kl_budget:
                high = middle
            else:
                low = middle
        alpha = high
    kl = kl_at(model, vector, alpha, neutral_texts, reference)
    matched = abs(kl - kl_budget) <= KL_TOLERANCE * kl_budget
    if not matched:
        warnings.warn(f"KL not matched for {vector.provenance or 'a vector'}: KL {kl:.4f} at alpha {alpha:.3g} "
                      f"against a budget of {kl_budget} (alpha_max {alpha_max}). Its efficacy is not comparable "
                      "with the other rows: raise alpha_max, or lower kl_budget.", UserWarning, stacklevel=2)
    return alpha, kl, matched


def _bracket(model: Any, vector: SteeringVector, kl_budget: float, neutral_texts: Sequence[str],
             reference: list[torch.Tensor], alpha_max: float) -> tuple[float, float | None]:
    """``(low, high)`` with KL(low) < budget <= KL(high) by doubling alpha from 0.25; high None if never reached."""
    low, alpha = 0.0, 0.25
    while alpha <= alpha_max:
        if kl_at(model, vector, alpha, neutral_texts, reference) >= kl_budget:
            return low, alpha
        low, alpha = alpha, alpha * 2
    return low, None


def _oriented_random(d_model: int, x_train: torch.Tensor, y_train: Any, seed: int) -> torch.Tensor:
    """A random unit direction ``[d_model]``, flipped if its projection has train AUROC < 0.5."""
    direction = _unit(torch.randn(d_model, generator=torch.Generator().manual_seed(seed)))
    train_auroc = auroc(np.asarray(y_train), x_train.numpy() @ direction.numpy())
    return -direction if train_auroc < 0.5 else direction


def method_directions(model: Any, sae: Any, concept: Concept, seed: int = 0) -> tuple[dict[str, dict], dict[str, Any]]:
    """``{method: {"direction": [d], "feature": int|None, "test_scores": [n_test]}}`` plus the feature-level data used."""
    x_train = site_activations(model, sae, concept.train.texts, position="last")
    x_test = site_activations(model, sae, concept.test.texts, position="last")
    z_train, z_test = encode(sae, x_train), encode(sae, x_test)
    y_train = concept.train.labels
    raptor = RaptorProbe(Cs=30).fit(x_train.numpy(), y_train)
    diff_means = DiffMeans().fit(x_train.numpy(), y_train)
    train_auroc = latent_aurocs(z_train, y_train)
    cosines = decoder_cosines(sae, diff_means.coef_).numpy()
    token_acts, text_index, _ = token_rows(model, sae, concept.train.texts)
    z_tokens = encode(sae, token_acts)  # [n_tokens, d_sae]
    inputs = input_scores(z_tokens, np.asarray(y_train)[text_index.numpy()])
    live = (z_tokens > 0).any(dim=0).numpy()  # features that fire somewhere in the concept's texts
    out = output_scores(model, sae, concept.score_prompts, concept.positive_words, concept.negative_words)
    aligned, by_auroc = int(np.argmax(cosines)), int(np.argmax(train_auroc))
    by_output = int(np.argmax(np.where(live, np.nan_to_num(out, nan=-np.inf), -np.inf)))
    W_dec = sae.W_dec.detach().float().cpu()
    random_direction = _oriented_random(model.d_model, x_train, y_train, seed)
    directions = {
        "raptor": {"direction": _unit(raptor.coef_), "feature": None,
                   "test_scores": raptor.decision_function(x_test.numpy())},
        "diff_means": {"direction": _unit(diff_means.coef_), "feature": None,
                       "test_scores": x_test.numpy() @ _unit(diff_means.coef_).numpy()},
        "random": {"direction": random_direction, "feature": None,
                   "test_scores": x_test.numpy() @ random_direction.numpy()},
    }
    for method, feature in (("sae_aligned", aligned), ("sae_auroc", by_auroc), ("sae_output", by_output)):
        directions[method] = {"direction": _unit(W_dec[feature]), "feature": feature,
                              "test_scores": z_test[:, feature].numpy()}
    features = {"train_auroc": train_auroc, "test_auroc": latent_aurocs(z_test, concept.test.labels),
                "input_score": inputs, "live": live,
                "cosine_diff_means": cosines, "output_score": out, "z_train": z_train, "z_test": z_test,
                "x_train": x_train, "x_test": x_test, "raptor": raptor, "diff_means": diff_means,
                "train_labels": np.asarray(y_train), "train_groups": np.asarray(concept.train.groups), "test_labels": np.asarray(concept.test.labels)}
    return directions, features


def compare_methods(model: Any, sae: Any, concept: Concept, neutral_texts: Sequence[str],
                    kl_budget: float = KL_BUDGET) -> dict[str, Any]:
    """Detection AUROC and steering efficacy at matched KL for every method of :data:`METHODS`.

    Returns ``{"concept", "kl_budget", "baseline_efficacy", "efficacy_name", "median_norm",
    "methods": [rows], "features": {...}}``; each row has method, feature, detection_auroc,
    cosine_with_diff_means, alpha (x the median token norm), kl, matched (KL within
    :data:`KL_TOLERANCE` of the budget) and efficacy.
    """
    point = check_sae(sae, model)
    directions, features = method_directions(model, sae, concept)
    median_norm = float(site_activations(model, sae, neutral_texts).norm(dim=-1).median())
    reference = token_logprobs(model, neutral_texts)
    baseline = concept.efficacy(model)
    diff_unit = directions["diff_means"]["direction"]
    rows = []
    for method in METHODS:
        entry = directions[method]
        vector = SteeringVector(entry["direction"] * median_norm, layers=point.layer, site=point.site,
                                model_name=model.name, provenance={"method": method, "feature": entry["feature"]})
        alpha, kl, matched = alpha_for_kl(model, vector, kl_budget, neutral_texts, reference)
        with steer(model, vector, alpha=alpha, positions=STEER_POSITIONS):
            efficacy = concept.efficacy(model)
        rows.append({"method": method, "feature": entry["feature"],
                     "detection_auroc": auroc(np.asarray(concept.test.labels), entry["test_scores"]),
                     "cosine_with_diff_means": float(entry["direction"] @ diff_unit),
                     "alpha": round(alpha, 4), "kl": kl, "matched": matched, "efficacy": efficacy})
    return {"concept": concept.name, "efficacy_name": concept.efficacy_name, "kl_budget": kl_budget,
            "baseline_efficacy": baseline, "median_norm": median_norm, "layer": point.layer, "site": point.site,
            "methods": rows, "features": features}


def detect_vs_steer_summary(result: dict[str, Any]) -> str:
    """One sentence per comparison, computed from its rows: which method steers best, and does it detect?"""
    rows = [row for row in result["methods"] if row["matched"]]
    unmatched = [row["method"] for row in result["methods"] if not row["matched"]]
    note = f" (left out, KL not matched: {', '.join(unmatched)})" if unmatched else ""
    if not rows:
        return f"{result['concept']}: no method reached the KL budget{note}."
    steerer = max(rows, key=lambda row: row["efficacy"])
    detector = max(rows, key=lambda row: row["detection_auroc"])
    detects = abs(steerer["detection_auroc"] - 0.5) >= CHANCE_MARGIN
    verdict = (f"and detects it with held-out AUROC {steerer['detection_auroc']:.3f}" if detects else
               f"but does not detect it (held-out AUROC {steerer['detection_auroc']:.3f}, chance level)")
    return (f"{result['concept']}: {steerer['method']} steers best (efficacy {steerer['efficacy']:.2f} at KL "
            f"{result['kl_budget']}) {verdict}; the best detector is {detector['method']} (AUROC "
            f"{detector['detection_auroc']:.3f}, efficacy {detector['efficacy']:.2f}){note}.")

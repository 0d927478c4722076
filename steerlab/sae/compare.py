"""Supervised directions vs SAE features on one concept, AxBench-style without an LLM judge.

For each method, a unit direction at the SAE's site:

* ``raptor``: RaptorProbe on the raw activations (last token of the train texts);
* ``diff_means``: difference of class means (mass-mean, "The Geometry of Truth");
* ``sae_aligned``: the SAE feature whose decoder row has the largest cosine with diff_means;
* ``sae_auroc``: the feature whose activation best detects the concept on train;
* ``sae_input``: the feature with the best input score (Arad et al.: the share of its top-activating
  train tokens that come from the concept's texts; ties broken by train AUROC), among live ones
  (not in :data:`METHODS` by default: pass ``methods=ALL_METHODS``);
* ``sae_output``: the feature with the best output score (Arad et al.) among those that fire
  on the concept's texts (a dead latent's decoder row is a direction, not a feature);
* ``random``: a random direction (the control), its sign oriented on the TRAIN split (flipped
  if its train AUROC is below 0.5) so that the control is not handicapped by an arbitrary sign.

Detection: held-out AUROC (probe logit; projection for diff_means and random; the latent's
own activation for SAE features). Steering (Wu et al., "AxBench"): each direction is added
at every token but the first (the attention sink, which the SAE hooks and output scores also
leave alone: :data:`AFTER_SINK_POSITIONS`) with the largest alpha whose KL on neutral text stays
within a common budget (:data:`KL_BUDGET`, 0.1 nats per token), then the concept's efficacy is
measured, beside a same-norm random direction at the same alpha (``control_efficacy``). Matching
KL, not alpha, compares methods at equal damage; a row whose KL could not be brought within
:data:`KL_TOLERANCE` of the budget is flagged ``matched=False`` (and warned about). The alpha
searches of all methods share batched forwards (:func:`search_alphas`: a doubling grid, then
multisection rounds), so the comparison is a handful of large forwards, not hundreds of tiny ones.

Example:
    >>> from steerlab.sae.concepts import truth_concept
    >>> result = compare_methods(model, sae, truth_concept(model), neutral_texts)   # doctest: +SKIP
    >>> [(r["method"], round(r["detection_auroc"], 2), round(r["efficacy"], 2)) for r in result["methods"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from steerlab.probes import DiffMeans, RaptorProbe
from steerlab.probes.metrics import auroc
from steerlab.sae.activations import encode_latents, site_activations, token_rows
from steerlab.sae.alignment import decoder_cosines
from steerlab.sae.concepts import Concept
from steerlab.sae.feature_probes import latent_aurocs
from steerlab.sae.loading import check_sae
from steerlab.sae.scores import input_scores, output_scores
from steerlab.steering.evaluation import KL_BUDGET, evaluate_many, random_control
from steerlab.steering.injection import steer
from steerlab.steering.metrics import kl_divergence, token_logprobs
from steerlab.steering.vector import SteeringVector

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelLike

# KL_BUDGET (0.1 nats per token on neutral text): the damage every method is allowed (stage, benchmark, notebook)
KL_TOLERANCE = 0.2  # a row is "matched" when |kl - budget| <= KL_TOLERANCE * budget
AFTER_SINK_POSITIONS = (1, None)  # steer from token 1 on: token 0 is the attention sink (BOS on the demo model)
CONTROL_SEED = 1  # the same-norm random control at each row's alpha (seed 0 is the "random" method's direction)
CHANCE_MARGIN = 0.05  # |AUROC - 0.5| below this reads as "does not detect"
METHODS = ("raptor", "diff_means", "sae_aligned", "sae_auroc", "sae_output", "random")
ALL_METHODS = ("raptor", "diff_means", "sae_aligned", "sae_auroc", "sae_input", "sae_output", "random")


def _unit(vector: SteeringVector) -> torch.Tensor:
    vector = torch.as_tensor(np.asarray(vector), dtype=torch.float32).reshape(-1)
    return vector / vector.norm().clamp_min(1e-12)


def kl_at(model: ModelLike, vector: SteeringVector, alpha: float, neutral_texts: Sequence[str],
          reference: list[torch.Tensor]) -> float:
    """KL(unsteered || steered) per token on neutral text with ``vector`` added at ``alpha``; raises if not finite.

    One forward per call: the reference path that :func:`kls_at` batches.
    """
    with steer(model, vector, alpha=alpha, positions=AFTER_SINK_POSITIONS):
        kl = kl_divergence(reference, token_logprobs(model, neutral_texts))
    _check_finite(kl, alpha, vector)
    return kl


def kls_at(model: ModelLike, settings: Sequence[tuple[SteeringVector, float]], neutral_texts: Sequence[str]) -> list[float]:
    """KL per token on neutral text for every ``(vector, alpha)``, in batched forwards; raises if one is not finite."""
    rows = evaluate_many(model, settings, None, neutral_texts, positions=AFTER_SINK_POSITIONS)
    for row, (vector, alpha) in zip(rows, settings):
        _check_finite(row.kl, alpha, vector)
    return [row.kl for row in rows]


def _check_finite(kl: float, alpha: float, vector: SteeringVector) -> None:
    if not math.isfinite(kl):
        raise ValueError(f"KL on neutral text is {kl} at alpha={alpha} for {vector.provenance or 'this vector'}: "
                         "the steered model produced non-finite log-probabilities. Check the direction for "
                         "NaN/inf, or lower alpha_max.")


def search_alphas(kl_of: Callable[[list[tuple[int, float]]], list[float]], n_vectors: int, kl_budget: float,
                  alpha_max: float = 16.0, steps: int = 7, bits_per_round: int = 1, grid_per_round: int = 2
                  ) -> list[tuple[float, float]]:
    """Per vector, ``(alpha, kl)``: the largest alpha found with KL within ``kl_budget``, every vector at once.

    ``kl_of([(vector index, alpha), ...])`` returns their KLs (one batched evaluation). A doubling
    grid from 0.25 to ``alpha_max`` brackets the budget (``grid_per_round`` grid points per
    evaluation, for the vectors not bracketed yet), then ``steps`` bisection steps run as
    multisection rounds of ``2**b - 1`` points per bracket (``b <= bits_per_round`` bits per
    round). For a KL that grows with alpha this ends on the same dyadic point as the sequential
    search (doubling, then one bisection step per forward), with about as many KL evaluations
    when ``bits_per_round=1``, but every vector's evaluations of a round share batched forwards.
    A vector whose KL stays under budget up to ``alpha_max`` gets ``alpha_max``; one over budget
    already at 0.25 is bisected toward 0.
    """
    grid = []
    alpha = 0.25
    while alpha <= alpha_max:
        grid.append(alpha)
        alpha *= 2
    seen: dict[tuple[int, float], float] = {}

    def evaluate(pairs: list[tuple[int, float]]) -> None:
        pairs = [pair for pair in dict.fromkeys(pairs) if pair not in seen]
        if pairs:
            seen.update(zip(pairs, kl_of(pairs)))

    lows, highs = [0.0] * n_vectors, [None] * n_vectors
    for start in range(0, len(grid), grid_per_round):
        open_vectors = [index for index in range(n_vectors) if highs[index] is None]
        if not open_vectors:
            break
        points = grid[start:start + grid_per_round]
        evaluate([(index, alpha) for index in open_vectors for alpha in points])
        for index in open_vectors:
            for alpha in points:
                if seen[(index, alpha)] >= kl_budget:
                    highs[index] = alpha
                    break
                lows[index] = alpha
    evaluate([(index, alpha_max) for index in range(n_vectors) if highs[index] is None])
    remaining = steps
    while remaining > 0:
        bits = min(bits_per_round, remaining)
        points = {index: [lows[index] + (high - lows[index]) * i / 2 ** bits for i in range(1, 2 ** bits)]
                  for index, high in enumerate(highs) if high is not None}
        evaluate([(index, alpha) for index, alphas in points.items() for alpha in alphas])
        for index, alphas in points.items():
            for alpha in alphas:  # the first point at or over budget closes the bracket
                if seen[(index, alpha)] >= kl_budget:
                    highs[index] = alpha
                    break
                lows[index] = alpha
        remaining -= bits
    return [(alpha_max, seen[(index, alpha_max)]) if high is None else (lows[index], seen.get((index, lows[index]), 0.0))
            for index, high in enumerate(highs)]


def search_alpha_sequential(kl: Callable[[float], float], kl_budget: float, alpha_max: float = 16.0,
                            steps: int = 7) -> float:
    """The one-evaluation-at-a-time reference of :func:`search_alphas` for one vector: doubling from 0.25,
    then ``steps`` bisection steps; the largest alpha found with ``kl(alpha) < kl_budget``."""
    low, alpha, high = 0.0, 0.25, None
    while alpha <= alpha_max:
        if kl(alpha) >= kl_budget:
            high = alpha
            break
        low, alpha = alpha, alpha * 2
    if high is None:
        return alpha_max
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (low, middle) if kl(middle) >= kl_budget else (middle, high)
    return low


def alphas_for_kl(model: ModelLike, vectors: Sequence[SteeringVector], kl_budget: float, neutral_texts: Sequence[str],
                  alpha_max: float = 16.0, steps: int = 7) -> list[tuple[float, float, bool]]:
    """Per vector, ``(alpha, kl, matched)``: the largest alpha (multisection, :func:`search_alphas`) whose KL on
    neutral text stays within ``kl_budget``, for every vector in the same batched forwards.

    ``alpha`` multiplies ``vector.direction``. ``matched`` is ``kl_budget - kl <= KL_TOLERANCE * kl_budget``;
    it is False (with a warning) when even ``alpha_max`` stays under budget, or when KL jumps past it.
    """
    vectors = list(vectors)
    found = search_alphas(lambda pairs: kls_at(model, [(vectors[i], alpha) for i, alpha in pairs], neutral_texts),
                          len(vectors), kl_budget, alpha_max, steps)
    results = []
    for vector, (alpha, kl) in zip(vectors, found):
        matched = abs(kl - kl_budget) <= KL_TOLERANCE * kl_budget
        if not matched:
            warnings.warn(f"KL not matched for {vector.provenance or 'a vector'}: KL {kl:.4f} at alpha {alpha:.3g} "
                          f"against a budget of {kl_budget} (alpha_max {alpha_max}). Its efficacy is not comparable "
                          "with the other rows: raise alpha_max, or lower kl_budget.", UserWarning, stacklevel=2)
        results.append((alpha, kl, matched))
    return results


def alpha_for_kl(model: ModelLike, vector: SteeringVector, kl_budget: float, neutral_texts: Sequence[str],
                 reference: list[torch.Tensor] | None = None, alpha_max: float = 16.0, steps: int = 7
                 ) -> tuple[float, float, bool]:
    """``(alpha, kl, matched)`` for one vector: :func:`alphas_for_kl` (``reference`` is not needed any more)."""
    return alphas_for_kl(model, [vector], kl_budget, neutral_texts, alpha_max, steps)[0]


def _oriented_random(d_model: int, x_train: torch.Tensor, y_train: Any, seed: int) -> torch.Tensor:
    """A random unit direction ``[d_model]``, flipped if its projection has train AUROC < 0.5."""
    direction = _unit(torch.randn(d_model, generator=torch.Generator().manual_seed(seed)))
    train_auroc = auroc(np.asarray(y_train), x_train.numpy() @ direction.numpy())
    return -direction if train_auroc < 0.5 else direction


def _last_and_later_tokens(model: ModelLike, sae: SAE, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One capture of every token: ``(last token [n_texts, d], later tokens [n, d], their text index [n])``.

    "Later" tokens are all but each text's first (the attention sink) - input scores' rows.
    """
    acts, text_index, token_index = token_rows(model, sae, texts, skip_first=False)
    longest = torch.zeros(len(texts), dtype=torch.long).scatter_reduce(0, text_index, token_index, reduce="amax",
                                                                       include_self=False)
    rows = torch.nonzero(token_index == longest[text_index]).flatten()
    last = rows[text_index[rows].argsort()]  # [n_texts]: each text's last token, in text order
    later = token_index >= 1
    return acts[last], acts[later], text_index[later]


def _output_pool(n: int, live: np.ndarray, rankings: Sequence[np.ndarray], seed: int) -> list[int]:
    """Features whose output score is measured: the top ``n`` live ones of each ranking, plus ``n`` random live ones."""
    pool: dict[int, None] = {}
    for ranking in rankings:
        pool.update(dict.fromkeys([int(f) for f in ranking if live[f]][:n]))
    rest = np.setdiff1d(np.flatnonzero(live), list(pool))
    pool.update(dict.fromkeys(np.random.default_rng(seed).permutation(rest)[:n].tolist()))
    return sorted(pool)


def method_directions(model: ModelLike, sae: SAE, concept: Concept, seed: int = 0, output_candidates: int | None = None
                      ) -> tuple[dict[str, dict], dict[str, Any]]:
    """``{method: {"direction": [d], "feature": int|None, "test_scores": [n_test]}}`` plus the feature-level data used.

    ``output_candidates``: None scores every feature's output (a forward per feature and prompt); an int
    ``n`` scores only a pool (the top ``n`` live features by train AUROC, by input score and by cosine
    with diff-means, and ``n`` random live ones); the others' output score is NaN. For SAEs with
    thousands of latents on a real model.
    """
    x_train, token_acts, text_index = _last_and_later_tokens(model, sae, concept.train.texts)
    x_test = site_activations(model, sae, concept.test.texts, position="last")
    z_train, z_test = encode_latents(sae, x_train), encode_latents(sae, x_test)
    y_train = concept.train.labels
    raptor = RaptorProbe(Cs=30).fit(x_train.numpy(), y_train)
    diff_means = DiffMeans().fit(x_train.numpy(), y_train)
    train_auroc = latent_aurocs(z_train, y_train)
    cosines = decoder_cosines(sae, diff_means.coef_).numpy()
    z_tokens = encode_latents(sae, token_acts)  # [n_tokens, d_sae]
    inputs = input_scores(z_tokens, np.asarray(y_train)[text_index.numpy()])
    live = (z_tokens > 0).any(dim=0).numpy()  # features that fire somewhere in the concept's texts
    by_input_order = np.lexsort((-train_auroc, -np.nan_to_num(inputs, nan=-np.inf)))  # input score, then AUROC
    pool = None if output_candidates is None else _output_pool(
        output_candidates, live, (np.argsort(-train_auroc), by_input_order, np.argsort(-cosines)), seed)
    out = np.full(sae.cfg.d_sae, np.nan)
    out[slice(None) if pool is None else pool] = output_scores(
        model, sae, concept.score_prompts, concept.positive_words, concept.negative_words, features=pool)
    aligned, by_auroc = int(np.argmax(cosines)), int(np.argmax(train_auroc))
    by_input = int(next(f for f in by_input_order if live[f]))
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
    for method, feature in (("sae_aligned", aligned), ("sae_auroc", by_auroc), ("sae_input", by_input),
                            ("sae_output", by_output)):
        directions[method] = {"direction": _unit(W_dec[feature]), "feature": feature,
                              "test_scores": z_test[:, feature].numpy()}
    features = {"train_auroc": train_auroc, "test_auroc": latent_aurocs(z_test, concept.test.labels),
                "input_score": inputs, "live": live, "output_pool": pool,
                "cosine_diff_means": cosines, "output_score": out, "z_train": z_train, "z_test": z_test,
                "x_train": x_train, "x_test": x_test, "raptor": raptor, "diff_means": diff_means,
                "train_labels": np.asarray(y_train), "train_groups": np.asarray(concept.train.groups), "test_labels": np.asarray(concept.test.labels)}
    return directions, features


class MethodComparison(dict):
    """What :func:`compare_methods` returns: the plain dict of its docstring (saved as JSON as it is),
    printed as a short table instead of 56 KB of arrays."""

    def __repr__(self) -> str:
        head = (f"MethodComparison({self['concept']!r}, {self['efficacy_name']}, layer {self['layer']} {self['site']}, "
                f"KL budget {self['kl_budget']:g}, baseline efficacy {self['baseline_efficacy']:.3f})")
        lines = [f"  {'method':<16} {'feature':>7} {'AUROC':>6} {'alpha':>7} {'KL':>6} {'efficacy':>8} {'random':>7}"]
        for row in self["methods"]:
            feature = "" if row["feature"] is None else str(row["feature"])
            lines.append(f"  {row['method']:<16} {feature:>7} {row['detection_auroc']:>6.3f} {row['alpha']:>7.3g} "
                         f"{row['kl']:>6.3f} {row['efficacy']:>8.3f} {row['control_efficacy']:>7.3f}"
                         + ("" if row["matched"] else "  (KL not matched)"))
        return "\n".join([head, *lines])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter print this, not the dict
        printer.text(repr(self))


def compare_methods(model: ModelLike, sae: SAE, concept: Concept, neutral_texts: Sequence[str],
                    kl_budget: float = KL_BUDGET, methods: Sequence[str] = METHODS,
                    output_candidates: int | None = None) -> MethodComparison:
    """Detection AUROC and steering efficacy at matched KL for every method of ``methods`` (of :data:`ALL_METHODS`).

    ``output_candidates``: how many features per ranking get an output score (None: all; see
    :func:`method_directions`).

    Returns ``{"concept", "kl_budget", "baseline_efficacy", "efficacy_name", "median_norm",
    "methods": [rows], "features": {...}}``; each row has method, feature, detection_auroc,
    cosine_with_diff_means, alpha (x the median token norm), kl (<= the budget), matched (KL within
    :data:`KL_TOLERANCE` of the budget), efficacy, and control_efficacy / control_kl: a same-norm
    random direction at the same alpha.
    """
    point = check_sae(sae, model)
    unknown = [method for method in methods if method not in ALL_METHODS]
    if unknown or "diff_means" not in methods:
        raise ValueError(f"methods must be among {', '.join(ALL_METHODS)} and include diff_means (the reference "
                         f"for the cosine column); got {list(methods)}.")
    directions, features = method_directions(model, sae, concept, output_candidates=output_candidates)
    median_norm = float(site_activations(model, sae, neutral_texts).norm(dim=-1).median())
    baseline = concept.efficacy(model)
    diff_unit = directions["diff_means"]["direction"]
    vectors = [SteeringVector(directions[method]["direction"] * median_norm, layers=point.layer, site=point.site,
                              model_name=model.name,
                              provenance={"method": method, "feature": directions[method]["feature"]})
               for method in methods]
    found = alphas_for_kl(model, vectors, kl_budget, neutral_texts)
    # efficacy of every direction at its alpha, and of a same-norm random control at that alpha, in one pass
    controls = [random_control(vector, seed=CONTROL_SEED) for vector in vectors]
    measured = evaluate_many(model, [(vector, alpha) for vector, (alpha, _, _) in zip(vectors, found)]
                             + [(control, alpha) for control, (alpha, _, _) in zip(controls, found)],
                             concept.efficacy, neutral_texts, positions=AFTER_SINK_POSITIONS)
    rows = []
    for index, (method, (alpha, kl, matched)) in enumerate(zip(methods, found)):
        entry, control = directions[method], measured[len(methods) + index]
        rows.append({"method": method, "feature": entry["feature"],
                     "detection_auroc": auroc(np.asarray(concept.test.labels), entry["test_scores"]),
                     "cosine_with_diff_means": float(entry["direction"] @ diff_unit),
                     "alpha": round(alpha, 4), "kl": kl, "matched": matched, "efficacy": measured[index].efficacy,
                     "control_efficacy": control.efficacy, "control_kl": control.kl})
    return MethodComparison(concept=concept.name, efficacy_name=concept.efficacy_name, kl_budget=kl_budget,
                            baseline_efficacy=baseline, median_norm=median_norm, layer=point.layer, site=point.site,
                            methods=rows, features=features)


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

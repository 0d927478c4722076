"""``evaluate`` and ``sweep``: a steering vector's effect and side effects, with a random control."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from steerlab.models.adapter import ModelAdapter
from steerlab.steering import metrics
from steerlab.steering.injection import as_finite_float, as_index, steer
from steerlab.steering.vector import SteeringVector

# efficacy(model) -> one number, measured inside the steering block (higher = more effect)
Efficacy = Callable[[ModelAdapter], float]


def flip_rate(model: ModelAdapter, prompts: Sequence[str], positive_word: str, negative_word: str,
              toward_positive: bool = True) -> Efficacy:
    """An efficacy: the share of verdicts flipped to the intended side.

    Only prompts whose UNSTEERED verdict is on the other side count (measured now, on the
    unsteered model): e.g. with ``toward_positive``, false statements the model rejects, and
    the share of them it accepts under steering. Prompts already on the intended side would
    make any direction, random ones included, look effective. NaN when there is nothing to flip.
    """
    def on_intended_side(current: ModelAdapter) -> torch.Tensor:
        difference = metrics.logprob_difference(current, prompts, positive_word, negative_word)
        return (difference > 0) if toward_positive else (difference < 0)

    candidates = ~on_intended_side(model)

    def efficacy(steered_model: ModelAdapter) -> float:
        if not candidates.any():
            return float("nan")
        return float(on_intended_side(steered_model)[candidates].float().mean())
    return efficacy


def judged_generations(prompts: Sequence[str], judge: metrics.Judge, max_new_tokens: int = 12) -> Efficacy:
    """An efficacy: the mean judge score of greedy generations (e.g. ``word_rate`` of a lexicon)."""
    def efficacy(steered_model: ModelAdapter) -> float:
        scores = judge(steered_model.generate(list(prompts), max_new_tokens=max_new_tokens))
        return float(scores) if isinstance(scores, (int, float)) else float(sum(scores) / len(scores))
    return efficacy


@dataclass
class SteeringResult:
    """One (vector, alpha) evaluation."""

    layer: int | None
    alpha: float
    efficacy: float
    kl: float
    perplexity: float
    control: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(layer=self.layer, alpha=self.alpha, efficacy=self.efficacy, kl=self.kl,
                    perplexity=self.perplexity, control=self.control)


@dataclass
class SweepResult:
    """Rows of an alpha x layer sweep (vector and random control), plus the unsteered baseline."""

    rows: list[SteeringResult]
    baseline_efficacy: float
    baseline_perplexity: float
    chosen: SteeringResult | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_records(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self.rows]

    def choose(self, target_efficacy: float, kl_budget: float, control_max: float | None = None
               ) -> SteeringResult | None:
        """The smallest |alpha| (any layer) reaching ``target_efficacy`` with KL within budget.

        With ``control_max``, a setting also needs the random control at the same layer and
        alpha to stay at or below that efficacy: the effect must belong to the direction,
        not to any push of that size.
        """
        control = {(row.layer, row.alpha): row.efficacy for row in self.rows if row.control}
        candidates = [row for row in self.rows if not row.control and row.efficacy >= target_efficacy
                      and row.kl <= kl_budget
                      and (control_max is None or control.get((row.layer, row.alpha), math.inf) <= control_max)]
        self.chosen = min(candidates, key=lambda row: (abs(row.alpha), row.kl), default=None)
        self.settings.update(target_efficacy=target_efficacy, kl_budget=kl_budget, control_max=control_max)
        return self.chosen

    def figure(self):
        from steerlab.steering.figures import plot_sweep

        return plot_sweep(self)

    def __repr__(self) -> str:
        chosen = "none" if self.chosen is None else f"layer {self.chosen.layer}, alpha {self.chosen.alpha:g}"
        return (f"SweepResult(rows={len(self.rows)}, baseline_efficacy={self.baseline_efficacy:.3f}, "
                f"chosen={chosen})")


def _check_texts(texts: Any, name: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}: wrap one text as [text].")
    if not texts:
        raise ValueError(f"{name} is empty: pass at least one text.")
    return list(texts)


def _check_efficacy(efficacy: Any) -> None:
    if not callable(efficacy):
        raise TypeError(f"efficacy must be a function model -> float (e.g. flip_rate(...)), got "
                        f"{type(efficacy).__name__}.")


def _check_alpha_list(alphas: Any) -> list[float]:
    if isinstance(alphas, str) or not isinstance(alphas, Sequence):
        raise TypeError(f"alphas must be a list of numbers, got {type(alphas).__name__}: e.g. alphas=[0, 2, 4].")
    if not alphas:
        raise ValueError("alphas is empty: pass at least one alpha, e.g. [0, 2, 4].")
    return [as_finite_float(alpha, f"alphas[{i}]") for i, alpha in enumerate(alphas)]


def random_control(vector: SteeringVector, seed: int = 0) -> SteeringVector:
    """A random direction with the vector's norm (the control every steering claim needs)."""
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(vector.d_model, generator=generator)
    return replace(vector, direction=direction / direction.norm() * vector.norm, probe_weight_norm=None,
                   probe_intercept=None, provenance={"method": "random control", "seed": seed})


def evaluate(model: ModelAdapter, vector: SteeringVector, alpha: float, efficacy: Efficacy,
             neutral_texts: Sequence[str], *, reference: list[torch.Tensor] | None = None,
             control: bool = False, **steer_kwargs: Any) -> SteeringResult:
    """Efficacy, KL on neutral text and perplexity with ``vector`` injected at ``alpha``.

    ``reference`` (the unsteered next-token log-probs on ``neutral_texts``) is computed
    when not given; pass it to avoid recomputing it in a sweep.
    """
    alpha = as_finite_float(alpha, "alpha")
    _check_efficacy(efficacy)
    neutral_texts = _check_texts(neutral_texts, "neutral_texts")
    if reference is None:
        reference = metrics.token_logprobs(model, neutral_texts)
    with steer(model, vector, alpha=alpha, **steer_kwargs):
        value = efficacy(model)
        steered = metrics.token_logprobs(model, neutral_texts)
    kl = metrics.kl_divergence(reference, steered)
    log_likelihood = metrics.mean_nll(model, neutral_texts, steered)
    return SteeringResult(layer=vector.layers[0] if len(vector.layers) == 1 else None, alpha=alpha,
                          efficacy=value, kl=kl, perplexity=math.exp(log_likelihood), control=control)


def sweep(model: ModelAdapter, vector: SteeringVector | Mapping[int, SteeringVector], alphas: Sequence[float],
          efficacy: Efficacy, neutral_texts: Sequence[str], layers: Sequence[int] | None = None,
          control: bool = True, seed: int = 0, progress: bool = True, **steer_kwargs: Any) -> SweepResult:
    """Evaluate a vector at every alpha x layer, with a same-norm random direction as control.

    ``vector`` is one direction moved to each of ``layers``, or a ``{layer: vector}`` mapping
    (e.g. a per-layer probe's own direction at each layer), so that layers compete on the
    same footing in :meth:`SweepResult.choose`.

    Example:
        >>> result = sweep(model, vector, [0, 2, 4, 8], flip_rate(model, prompts, "true", "false"),
        ...                neutral_texts, layers=[1, 2, 3])                         # doctest: +SKIP
        >>> result.choose(target_efficacy=0.9, kl_budget=0.5)                      # doctest: +SKIP
    """
    alphas = _check_alpha_list(alphas)
    _check_efficacy(efficacy)
    neutral_texts = _check_texts(neutral_texts, "neutral_texts")
    if isinstance(vector, Mapping):
        per_layer = {as_index(layer, "layer"): candidate.at(layer) for layer, candidate in vector.items()}
    elif isinstance(vector, SteeringVector):
        chosen = layers if layers is not None else vector.layers
        if hasattr(chosen, "tolist"):
            chosen = chosen.tolist()
        chosen = chosen if isinstance(chosen, (list, tuple, range)) else [chosen]
        per_layer = {as_index(layer, "layer"): vector.at(as_index(layer, "layer")) for layer in chosen}
    else:
        raise TypeError(f"vector must be a SteeringVector or a {{layer: SteeringVector}} mapping, got "
                        f"{type(vector).__name__}.")
    if not per_layer:
        raise ValueError("No layers to sweep: pass layers=[...] or a non-empty {layer: vector} mapping.")
    reference = metrics.token_logprobs(model, neutral_texts)
    baseline_efficacy = efficacy(model)
    baseline_perplexity = math.exp(metrics.mean_nll(model, neutral_texts, reference))
    jobs = [(False, candidate, alpha) for candidate in per_layer.values() for alpha in alphas]
    if control:
        jobs += [(True, random_control(candidate, seed), alpha) for candidate in per_layer.values() for alpha in alphas]
    rows = [evaluate(model, candidate, alpha, efficacy, neutral_texts, reference=reference, control=is_control,
                     **steer_kwargs)
            for is_control, candidate, alpha in tqdm(jobs, desc="steering sweep", disable=not progress)]
    return SweepResult(rows, baseline_efficacy, baseline_perplexity,
                       settings={"layers": list(per_layer), "alphas": list(alphas),
                                 **{k: str(v) for k, v in steer_kwargs.items()}})

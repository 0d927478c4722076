"""``evaluate`` and ``steering_sweep``: a steering vector's effect and side effects, with a random control."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from steerlab.models.adapter import ModelAdapter
from steerlab.steering import batching, metrics
from steerlab.steering.injection import as_finite_float, as_index, steer
from steerlab.steering.vector import SteeringVector

# efficacy(model) -> one number, measured inside the steering block (higher = more effect)
Efficacy = Callable[[ModelAdapter], float]
KL_BUDGET = 0.1  # nats per token on neutral text: the default damage a chosen steering setting may do


class NextTokenEfficacy:
    """An efficacy read from the next-token log-probs after fixed prompts.

    Such an efficacy can be measured for many steering settings in one batched forward
    (:func:`steering_sweep`, :func:`evaluate_many`). Subclasses set ``prompts`` and ``token_ids``
    and define ``score(logprobs [n_prompts, len(token_ids)]) -> float``. Called on a model,
    it measures that model as currently steered, like any efficacy.
    """

    prompts: list[str]
    token_ids: list[int]

    def score(self, logprobs: torch.Tensor) -> float:
        raise NotImplementedError

    def columns(self, model: ModelAdapter) -> torch.Tensor:
        """``[n_prompts, len(token_ids)]``: the next-token log-probs of ``token_ids`` (one plain pass)."""
        return metrics.last_token_logprobs(model, self.prompts)[:, self.token_ids]

    def __call__(self, model: ModelAdapter) -> float:
        return self.score(self.columns(model))


class FlipRate(NextTokenEfficacy):
    """The share of verdicts flipped to the intended side (see :func:`flip_rate`)."""

    def __init__(self, model: ModelAdapter, prompts: Sequence[str], positive_ids: Sequence[int],
                 negative_ids: Sequence[int], toward_positive: bool = True) -> None:
        self.prompts = _check_texts(prompts, "prompts")
        self.token_ids = [*positive_ids, *negative_ids]
        self.n_positive = len(positive_ids)
        self.toward_positive = toward_positive
        self.candidates = ~self.on_intended_side(self.columns(model))  # [n_prompts], measured unsteered

    def margin(self, logprobs: torch.Tensor) -> torch.Tensor:
        """``[..., n_prompts]``: log P(positive words) - log P(negative words) from ``[..., n_prompts, n_ids]``."""
        positive, negative = logprobs[..., :self.n_positive], logprobs[..., self.n_positive:]
        positive = positive[..., 0] if positive.shape[-1] == 1 else torch.logsumexp(positive, dim=-1)
        negative = negative[..., 0] if negative.shape[-1] == 1 else torch.logsumexp(negative, dim=-1)
        return positive - negative

    def on_intended_side(self, logprobs: torch.Tensor) -> torch.Tensor:
        margin = self.margin(logprobs)
        return (margin > 0) if self.toward_positive else (margin < 0)

    def score(self, logprobs: torch.Tensor) -> float:
        if not self.candidates.any():
            return float("nan")
        return float(self.on_intended_side(logprobs)[self.candidates].float().mean())

    def __repr__(self) -> str:
        return (f"FlipRate(prompts={len(self.prompts)}, candidates={int(self.candidates.sum())}, "
                f"toward_positive={self.toward_positive})")


def flip_rate(model: ModelAdapter, prompts: Sequence[str], positive_word: str, negative_word: str,
              toward_positive: bool = True) -> FlipRate:
    """An efficacy: the share of verdicts flipped to the intended side.

    Only prompts whose UNSTEERED verdict is on the other side count (measured now, on the
    unsteered model): e.g. with ``toward_positive``, false statements the model rejects, and
    the share of them it accepts under steering. Prompts already on the intended side would
    make any direction, random ones included, look effective. NaN when there is nothing to flip.
    The verdict is ``log P(positive_word) - log P(negative_word)`` as the next token.
    """
    return FlipRate(model, prompts, [metrics.word_token_id(model.tokenizer, positive_word)],
                    [metrics.word_token_id(model.tokenizer, negative_word)], toward_positive)


def word_set_flip_rate(model: ModelAdapter, prompts: Sequence[str], positive_words: Sequence[str],
                       negative_words: Sequence[str]) -> FlipRate:
    """An efficacy: among prompts whose unsteered next token leans to ``negative_words``, the share
    that lean to ``positive_words`` (``log P(positive set) > log P(negative set)``) when measured."""
    return FlipRate(model, prompts, [metrics.word_token_id(model.tokenizer, word) for word in positive_words],
                    [metrics.word_token_id(model.tokenizer, word) for word in negative_words], toward_positive=True)


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
class SteeringSweep:
    """Rows of an alpha x layer sweep (vector and random control), plus the unsteered baseline."""

    rows: list[SteeringResult]
    baseline_efficacy: float
    baseline_perplexity: float
    chosen: SteeringResult | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    best: SteeringResult | None = None  # set by choose: the chosen row, else the best within the KL budget

    def to_records(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self.rows]

    def choose(self, target_efficacy: float, kl_budget: float, control_max: float | None = None
               ) -> SteeringResult | None:
        """The smallest |alpha| (any layer) reaching ``target_efficacy`` with KL within budget.

        With ``control_max``, a setting also needs the random control at the same layer and
        alpha to stay at or below that efficacy: the effect must belong to the direction,
        not to any push of that size. None when no setting qualifies; :attr:`best` then
        holds the highest efficacy reached within the budget (:meth:`best_within`).
        """
        candidates = [row for row in self._within(kl_budget, control_max) if row.efficacy >= target_efficacy]
        self.chosen = min(candidates, key=lambda row: (abs(row.alpha), row.kl), default=None)
        self.best = self.chosen if self.chosen is not None else self.best_within(kl_budget, control_max)
        self.settings.update(target_efficacy=target_efficacy, kl_budget=kl_budget, control_max=control_max)
        return self.chosen

    def best_within(self, kl_budget: float, control_max: float | None = None) -> SteeringResult | None:
        """The highest efficacy (then the smallest |alpha|) among settings with KL <= ``kl_budget``
        (and the control at most ``control_max``); None if no setting stays within the budget."""
        rows = [row for row in self._within(kl_budget, control_max) if not math.isnan(row.efficacy)]
        return min(rows, key=lambda row: (-row.efficacy, abs(row.alpha), row.kl), default=None)

    def frontier(self, control: bool = False) -> list[SteeringResult]:
        """The efficacy-KL frontier: by increasing KL, each row whose efficacy beats every row of lower KL.

        Over every layer and alpha of the vector (``control=False``) or of the random control.
        """
        rows = sorted((row for row in self.rows if row.control == control and not math.isnan(row.efficacy)
                       and math.isfinite(row.kl)), key=lambda row: (row.kl, -row.efficacy))
        front: list[SteeringResult] = []
        for row in rows:
            if not front or row.efficacy > front[-1].efficacy:
                front.append(row)
        return front

    def _within(self, kl_budget: float, control_max: float | None) -> list[SteeringResult]:
        control = {(row.layer, row.alpha): row.efficacy for row in self.rows if row.control}
        return [row for row in self.rows if not row.control and row.kl <= kl_budget
                and (control_max is None or control.get((row.layer, row.alpha), math.inf) <= control_max)]

    def figure(self):
        from steerlab.steering.figures import plot_sweep

        return plot_sweep(self)

    def __repr__(self) -> str:
        chosen = "none" if self.chosen is None else f"layer {self.chosen.layer}, alpha {self.chosen.alpha:g}"
        return (f"SteeringSweep(rows={len(self.rows)}, baseline_efficacy={self.baseline_efficacy:.3f}, "
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


def evaluate_many(model: ModelAdapter, settings: Sequence[tuple[SteeringVector, float]], efficacy: Efficacy | None,
                  neutral_texts: Sequence[str], *, max_rows: int = batching.MAX_ROWS, progress: bool = False,
                  **steer_kwargs: Any) -> list[SteeringResult]:
    """:func:`evaluate` for many ``(vector, alpha)`` settings at once, in batched forwards.

    Each forward holds several settings x texts (per-row alphas, :mod:`steerlab.steering.batching`):
    KL and perplexity on ``neutral_texts`` always, the efficacy too when it is a
    :class:`NextTokenEfficacy` (e.g. :func:`flip_rate`; any other efficacy runs once per
    setting; None skips it: efficacy NaN, for KL searches). The numbers equal
    :func:`evaluate`'s up to float summation order (~1e-6). ``steer_kwargs`` take
    positions / norm_units (mode is 'add').

    Example:
        >>> rows = evaluate_many(model, [(vector, 0.5), (vector, 1.0)], flip_rate(model, prompts, "true", "false"),
        ...                      neutral_texts)                                  # doctest: +SKIP
        >>> [(row.alpha, row.efficacy, row.kl) for row in rows]                  # doctest: +SKIP
    """
    if efficacy is not None:
        _check_efficacy(efficacy)
    neutral_texts = _check_texts(neutral_texts, "neutral_texts")
    if not settings:
        return []
    return _evaluate_many(model, settings, efficacy, neutral_texts, max_rows, progress, steer_kwargs)[0]


def _evaluate_many(model: ModelAdapter, settings: Sequence[tuple[SteeringVector, float]], efficacy: Efficacy | None,
                   neutral_texts: list[str], max_rows: int, progress: bool, steer_kwargs: dict
                   ) -> tuple[list[SteeringResult], float]:
    """:func:`evaluate_many`'s rows, and the unsteered perplexity of the neutral texts."""
    steer_kwargs = dict(steer_kwargs)
    if steer_kwargs.get("mode", "add") != "add":
        raise ValueError(f"evaluate_many batches alphas of mode='add', not mode={steer_kwargs['mode']!r}: "
                         "call evaluate once per setting.")
    steer_kwargs.pop("mode", None)
    jobs = [batching.Setting(vector, as_finite_float(alpha, f"settings[{i}] alpha"))
            for i, (vector, alpha) in enumerate(settings)]
    rows = len(jobs) * (len(neutral_texts) + len(getattr(efficacy, "prompts", ())))
    with tqdm(total=rows, desc="steering (batched)", unit="row", disable=not progress) as bar:
        kl, nll, baseline_nll = _neutral_sums(model, jobs, neutral_texts, max_rows, steer_kwargs, bar)
        values = _efficacies(model, jobs, efficacy, max_rows, steer_kwargs, bar)
    rows = [SteeringResult(layer=job.vector.layers[0] if len(job.vector.layers) == 1 else None, alpha=job.alpha,
                           efficacy=value, kl=float(k), perplexity=math.exp(float(n)))
            for job, value, k, n in zip(jobs, values, kl, nll)]
    return rows, math.exp(baseline_nll)


def _neutral_sums(model: ModelAdapter, jobs: list[batching.Setting], texts: list[str], max_rows: int,
                  steer_kwargs: dict, bar: Any) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per setting, KL(unsteered || steered) and NLL per token on ``texts``; and the unsteered NLL per token."""
    kl, nll = torch.zeros(len(jobs), dtype=torch.float64), torch.zeros(len(jobs), dtype=torch.float64)
    baseline, tokens, seen = 0.0, 0, set()
    for chunk in batching.steered_chunks(model, texts, jobs, reference=True, max_rows=max_rows, **steer_kwargs):
        ids, mask = chunk.batch.input_ids, chunk.batch.attention_mask
        logprobs = chunk.logits.sub_(chunk.logits.logsumexp(dim=-1, keepdim=True))  # log-softmax in place
        chunk_kl, chunk_nll, count = metrics.next_token_sums(logprobs, chunk.reference, ids, mask)
        kl[chunk.settings.start:chunk.settings.stop] += chunk_kl.double()
        nll[chunk.settings.start:chunk.settings.stop] += chunk_nll.double()
        if chunk.texts.start not in seen:  # once per group of texts
            seen.add(chunk.texts.start)
            tokens += count
            baseline += float(metrics.next_token_sums(chunk.reference[None], chunk.reference, ids, mask)[1][0])
        bar.update(len(chunk.settings) * ids.shape[0])
    if tokens == 0:
        raise ValueError("The neutral texts need at least two tokens each to compare next-token distributions.")
    return kl / tokens, nll / tokens, baseline / tokens


def _efficacies(model: ModelAdapter, jobs: list[batching.Setting], efficacy: Efficacy | None, max_rows: int,
                steer_kwargs: dict, bar: Any) -> list[float]:
    """The efficacy under each setting: batched for a :class:`NextTokenEfficacy`, else one setting at a time."""
    if efficacy is None:
        return [math.nan] * len(jobs)
    if not isinstance(efficacy, NextTokenEfficacy):
        values = []
        for job in jobs:
            with steer(model, job.vector, alpha=job.alpha, **steer_kwargs):
                values.append(efficacy(model))
        return values
    columns = torch.empty(len(jobs), len(efficacy.prompts), len(efficacy.token_ids))
    for chunk in batching.steered_chunks(model, efficacy.prompts, jobs, max_rows=max_rows, **steer_kwargs):
        columns[chunk.settings.start:chunk.settings.stop, chunk.texts] = metrics.last_token_columns(
            chunk.logits, chunk.batch.attention_mask, efficacy.token_ids)
        bar.update(len(chunk.settings) * chunk.batch.input_ids.shape[0])
    return [efficacy.score(row) for row in columns]


def steering_sweep(model: ModelAdapter, vector: SteeringVector | Mapping[int, SteeringVector], alphas: Sequence[float],
          efficacy: Efficacy, neutral_texts: Sequence[str], layers: Sequence[int] | None = None,
          control: bool = True, seed: int = 0, progress: bool = True, *, batched: bool = True,
          max_rows: int = batching.MAX_ROWS, **steer_kwargs: Any) -> SteeringSweep:
    """Evaluate a vector at every alpha x layer, with a same-norm random direction as control.

    ``vector`` is one direction moved to each of ``layers``, or a ``{layer: vector}`` mapping
    (e.g. a per-layer probe's own direction at each layer), so that layers compete on the
    same footing in :meth:`SteeringSweep.choose`.

    ``batched`` (default): every alpha x layer x {vector, control} setting shares batched
    forwards (:func:`evaluate_many`; up to ``max_rows`` texts x settings per forward);
    ``batched=False`` runs :func:`evaluate` once per setting (the reference path; the same
    numbers to ~1e-6). Modes other than 'add' always run unbatched.

    Example:
        >>> result = steering_sweep(model, vector, [0, 2, 4, 8], flip_rate(model, prompts, "true", "false"),
        ...                neutral_texts, layers=[1, 2, 3])                         # doctest: +SKIP
        >>> result.choose(target_efficacy=0.9, kl_budget=0.1)                      # doctest: +SKIP
        >>> result.figure()  # the efficacy-KL frontier, vector and control, with the chosen point  # doctest: +SKIP
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
    jobs = [(False, candidate, alpha) for candidate in per_layer.values() for alpha in alphas]
    if control:
        jobs += [(True, random_control(candidate, seed), alpha) for candidate in per_layer.values() for alpha in alphas]
    baseline_efficacy = efficacy(model)
    batched = batched and steer_kwargs.get("mode", "add") == "add"
    if batched:
        rows, baseline_perplexity = _evaluate_many(model, [(candidate, alpha) for _, candidate, alpha in jobs],
                                                   efficacy, neutral_texts, max_rows, progress, steer_kwargs)
        rows = [replace(row, control=is_control) for row, (is_control, _, _) in zip(rows, jobs)]
    else:
        reference = metrics.token_logprobs(model, neutral_texts)
        baseline_perplexity = math.exp(metrics.mean_nll(model, neutral_texts, reference))
        rows = [evaluate(model, candidate, alpha, efficacy, neutral_texts, reference=reference, control=is_control,
                         **steer_kwargs)
                for is_control, candidate, alpha in tqdm(jobs, desc="steering sweep", disable=not progress)]
    return SteeringSweep(rows, baseline_efficacy, baseline_perplexity,
                       settings={"layers": list(per_layer), "alphas": list(alphas), "batched": batched,
                                 **{k: str(v) for k, v in steer_kwargs.items()}})

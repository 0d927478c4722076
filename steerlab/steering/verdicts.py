"""Verdict-flip measurements on labelled statement datasets (truth sets with verdict prompts)."""

from __future__ import annotations

from typing import Any

from steerlab.models.adapter import ModelAdapter
from steerlab.steering.evaluation import flip_rate
from steerlab.steering.injection import steer
from steerlab.steering.metrics import logprob_difference
from steerlab.steering.vector import SteeringVector


def prompts_with_label(dataset: Any, label: int) -> list[str]:
    return [prompt for prompt, y in zip(dataset.verdict_prompts, dataset.labels) if y == label]


def verdict_flips(model: ModelAdapter, dataset: Any, vector: SteeringVector, alpha: float, label: int,
                  **steer_kwargs: Any) -> float:
    """Among ``label`` statements whose unsteered verdict is the wrong way for the push, the share flipped.

    ``label=0`` pushes false statements toward the true word (use alpha > 0 with a truth
    direction); ``label=1`` pushes true statements toward the false word (alpha < 0).
    """
    efficacy = flip_rate(model, prompts_with_label(dataset, label), *dataset.verdict_words,
                         toward_positive=label == 0)
    with steer(model, vector, alpha=alpha, **steer_kwargs):
        return efficacy(model)


def judged_true(model: ModelAdapter, dataset: Any, label: int) -> float:
    """Unsteered: the share of ``label`` statements the model judges true."""
    difference = logprob_difference(model, prompts_with_label(dataset, label), *dataset.verdict_words)
    return float((difference > 0).float().mean())

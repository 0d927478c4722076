"""The two demo concepts the SAE comparison runs on: truth (demo/cities) and sentiment.

A :class:`Concept` bundles what detection and steering need: labelled train/test texts
(probes read their last token), an efficacy measured under steering, and the prompts
and words for output scores (:func:`steerlab.sae.scores.output_scores`).

Example:
    >>> concept = sentiment_concept()                                       # doctest: +SKIP
    >>> concept.name, len(concept.train.texts), concept.positive_words[:2]   # doctest: +SKIP
    ('sentiment', 600, ('great', 'lovely'))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from steerlab.datasets import load
from steerlab.steering.evaluation import flip_rate, word_set_flip_rate
from steerlab.world import templates as tp

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelLike


@dataclass
class Concept:
    """One binary concept: data to detect it and a way to score steering toward it.

    Attributes:
        name: "truth", "sentiment"...
        train, test: ConceptDataset splits (label 1 = the concept, 0 = its opposite).
        efficacy: ``efficacy(model) -> float`` (run under steering; higher = more concept).
        efficacy_name: what it measures, for tables.
        score_prompts: prompts for output scores; positive_words / negative_words: the
            concept's next tokens and their opposites.
    """

    name: str
    train: Any
    test: Any
    efficacy: Callable[[Any], float]
    efficacy_name: str
    score_prompts: Sequence[str]
    positive_words: Sequence[str]
    negative_words: Sequence[str]


def truth_concept(model: ModelLike) -> Concept:
    """Truth of city statements: efficacy = share of held-out false statements the model rejects
    that steering flips to the "true" verdict."""
    train, test = load("demo/cities", split="train"), load("demo/cities", split="test")
    false_prompts = [p for p, y in zip(test.verdict_prompts, test.labels) if y == 0]
    return Concept("truth", train, test, flip_rate(model, false_prompts, *test.verdict_words, toward_positive=True),
                   "false->true flip rate (held-out cities)", train.verdict_prompts[:32],
                   (test.verdict_words[0],), (test.verdict_words[1],))


def sentiment_concept(model: ModelLike) -> Concept:
    """Sentiment of reviews: efficacy = share of "we hated the {thing} , it was" prompts (negative
    context, so the model expects a negative adjective) flipped to a positive adjective."""
    prompts = [f"we {verb} the {thing} , it was" for verb in tp.NEGATIVE_VERBS for thing in tp.REVIEW_THINGS]
    return Concept("sentiment", load("demo/sentiment", split="train"), load("demo/sentiment", split="test"),
                   word_set_flip_rate(model, prompts, tp.POSITIVE_ADJECTIVES, tp.NEGATIVE_ADJECTIVES),
                   "negative->positive adjective flip rate", [f"the {thing} was" for thing in tp.REVIEW_THINGS[:16]],
                   tp.POSITIVE_ADJECTIVES, tp.NEGATIVE_ADJECTIVES)

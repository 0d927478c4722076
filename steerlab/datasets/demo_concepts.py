"""Non-truth concept sets of the demo world: sentiment and topic.

Rows come in matched pairs (same template and subject, opposite concept value),
so `ContrastPairs.from_dataset` gives clean ActAdd/CAA pairs. Splits are by the
thing reviewed (sentiment) or by sentence subject (topic). The sentiment test
split also uses a review template never seen in training.

Example:
    >>> ds = build_sentiment(split="train")
    >>> ds.labels[:2].tolist(), ds.groups[0] == ds.groups[1]
    ([1, 0], True)
"""

from __future__ import annotations

import random

import numpy as np

from steerlab.datasets.concept_dataset import ConceptDataset
from steerlab.world import templates as tp

_TEST_THINGS = frozenset(tp.REVIEW_THINGS[-6:])
_TEST_SUBJECTS = frozenset(tp.SPORT_SUBJECTS[-2:] + tp.FOOD_SUBJECTS[-2:])


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _paired_dataset(name: str, domain: str, split: str, pairs: list[tuple[str, str, str]], meta: dict) -> ConceptDataset:
    """pairs: (positive text, negative text, group) -> rows [pos, neg, pos, neg, ...]."""
    texts, groups = [], []
    for positive, negative, group in pairs:
        texts += [positive, negative]
        groups += [group, group]
    labels = np.tile(np.array([1, 0], dtype=np.int64), len(pairs))
    spans = [(0, len(t) - 2) for t in texts]  # the sentence without its " ."
    return ConceptDataset(name=name, texts=texts, labels=labels, domain=domain, groups=groups,
                          split=split, spans=spans, metadata=meta)


def build_sentiment(split: str, n_pairs: int = 300) -> ConceptDataset:
    """`demo/sentiment`: review sentences, 1 = positive, 0 = negative."""
    _check_split(split)
    rng = random.Random(f"sentiment-{split}")
    things = [t for t in tp.REVIEW_THINGS if (t in _TEST_THINGS) == (split == "test")]
    templates = tp.REVIEW_TEMPLATES if split == "test" else tp.REVIEW_TRAIN_TEMPLATES
    pairs = []
    for _ in range(n_pairs):
        thing, template = rng.choice(things), rng.choice(templates)
        sentences = []
        for adjectives, verbs in ((tp.POSITIVE_ADJECTIVES, tp.POSITIVE_VERBS), (tp.NEGATIVE_ADJECTIVES, tp.NEGATIVE_VERBS)):
            adj, adj2 = rng.sample(adjectives, 2)
            sentences.append(template.format(thing=thing, adj=adj, adj2=adj2, verb=rng.choice(verbs)) + " .")
        pairs.append((sentences[0], sentences[1], thing))
    return _paired_dataset("demo/sentiment", "sentiment", split, pairs, {"positive": "positive review"})


def build_topic(split: str, n_pairs: int = 300) -> ConceptDataset:
    """`demo/topic`: sentences about sport (1) or cooking (0)."""
    _check_split(split)
    rng = random.Random(f"topic-{split}")
    in_split = lambda subjects: [s for s in subjects if (s in _TEST_SUBJECTS) == (split == "test")]  # noqa: E731
    sport_subjects, food_subjects = in_split(tp.SPORT_SUBJECTS), in_split(tp.FOOD_SUBJECTS)
    pairs = []
    for _ in range(n_pairs):
        template = rng.choice(tp.TOPIC_TEMPLATES)
        sport_subject, food_subject = rng.choice(sport_subjects), rng.choice(food_subjects)
        sport = template.format(subj=sport_subject, verb=rng.choice(tp.SPORT_VERBS), obj=rng.choice(tp.SPORT_OBJECTS))
        food = template.format(subj=food_subject, verb=rng.choice(tp.FOOD_VERBS), obj=rng.choice(tp.FOOD_OBJECTS))
        pairs.append((sport + " .", food + " .", f"{sport_subject}|{food_subject}"))
    return _paired_dataset("demo/topic", "topic", split, pairs, {"positive": "sport"})

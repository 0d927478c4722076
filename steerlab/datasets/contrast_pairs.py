"""Contrast pairs (positive, negative) for ActAdd / CAA steering vectors.

Example:
    >>> pairs = ContrastPairs(positive=["i loved it ."], negative=["i hated it ."])
    >>> len(pairs), list(pairs)[0]
    (1, ('i loved it .', 'i hated it .'))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from steerlab.datasets.concept_dataset import ConceptDataset
from steerlab.datasets.user_data import DatasetFormatError


@dataclass(frozen=True)
class ContrastPairs:
    """Two equally long lists of texts; pair i is (positive[i], negative[i])."""

    positive: list[str]
    negative: list[str]

    def __post_init__(self) -> None:
        if not self.positive or not self.negative:
            raise DatasetFormatError("ContrastPairs: both `positive` and `negative` need at least one text.")
        if len(self.positive) != len(self.negative):
            raise DatasetFormatError(
                f"ContrastPairs: {len(self.positive)} positive vs {len(self.negative)} negative texts; "
                f"pairs need equal lengths (pair i = positive[i], negative[i]). Trim the longer list."
            )

    def __len__(self) -> int:
        return len(self.positive)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(zip(self.positive, self.negative))

    @classmethod
    def from_dataset(cls, dataset: ConceptDataset) -> ContrastPairs:
        """Pair positives with negatives of the same group, in row order (e.g. the true and
        the false statement about one city); unmatched rows are dropped."""
        positive: list[str] = []
        negative: list[str] = []
        pending: dict[str, tuple[list[str], list[str]]] = {}
        for text, label, group in zip(dataset.texts, dataset.labels.tolist(), dataset.groups):
            pos, neg = pending.setdefault(group, ([], []))
            (pos if label == 1 else neg).append(text)
            if pos and neg:
                positive.append(pos.pop(0))
                negative.append(neg.pop(0))
        return cls(positive=positive, negative=negative)

"""The typed containers every steerlab dataset loader returns.

`ConceptDataset`: n labelled texts for one binary concept (truth, sentiment...).
`QADataset`: n question prompts with reference answers, for hallucination work.

Example:
    >>> import numpy as np
    >>> ds = ConceptDataset(name="toy", texts=["a .", "b ."], labels=np.array([1, 0]), domain="toy", groups=["a", "b"])
    >>> len(ds), ds.labels.tolist()
    (2, [1, 0])
    >>> ds
    ConceptDataset('toy', split='all', n=2, positive=1, negative=1, domain='toy')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, repr=False, eq=False)
class ConceptDataset:
    """Texts with binary labels for one concept.

    Attributes (n = number of rows):
        texts: [n] the inputs (for truth sets: the unlabelled statements).
        labels: [n] int64 array, 1 = true / positive, 0 = false / negative.
        domain: what the concept is about ("cities", "sentiment", ...).
        groups: [n] entity id per row; split or cross-validate by group so no
            entity is on both sides (e.g. `sklearn.model_selection.GroupKFold`).
        spans: [n] (start, end) character span of the part to pool over, or None.
        verdict_prompts: [n] text after which a model gives its verdict (truth sets), or None.
        verdict_words: (true word, false word) the verdict is read from, or None.
        metadata: extra per-dataset information (world seed, templates, ...).
    """

    name: str
    texts: list[str]
    labels: np.ndarray
    domain: str
    groups: list[str]
    split: str = "all"
    spans: list[tuple[int, int]] | None = None
    verdict_prompts: list[str] | None = None
    verdict_words: tuple[str, str] | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.texts)
        for attr in ("labels", "groups", "spans", "verdict_prompts"):
            value = getattr(self, attr)
            if value is not None and len(value) != n:
                raise ValueError(f"{self.name}: {attr} has {len(value)} rows but texts has {n}")

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        positive = int(self.labels.sum())
        return (
            f"ConceptDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
            f"positive={positive}, negative={len(self) - positive}, domain={self.domain!r})"
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> ConceptDataset:
        """The rows at `indices` (e.g. a random subsample), same name and metadata."""
        idx = [int(i) for i in indices]
        return ConceptDataset(
            name=self.name,
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            domain=self.domain,
            groups=[self.groups[i] for i in idx],
            split=self.split,
            spans=None if self.spans is None else [self.spans[i] for i in idx],
            verdict_prompts=None if self.verdict_prompts is None else [self.verdict_prompts[i] for i in idx],
            verdict_words=self.verdict_words,
            metadata=self.metadata,
        )


@dataclass(frozen=True, repr=False, eq=False)
class QADataset:
    """Question prompts with reference answers, plus how well-known each entity is.

    Attributes (n = number of questions):
        texts: [n] prompts ending where the answer starts ("q : where is varno ? a :").
        answers: [n] reference answers (one word each in the demo world).
        groups: [n] the entity asked about.
        kinds: [n] question kind ("city" or "person").
        roles: [n] entity role in the world ("rare", "conflicted", "unseen", ...).
        frequency: [n] float array, relative mention weight of the entity in the
            training text (0 = never seen), log-uniform over ~3 orders of magnitude.
    """

    name: str
    texts: list[str]
    answers: list[str]
    groups: list[str]
    kinds: list[str]
    roles: list[str]
    frequency: np.ndarray
    split: str = "all"
    domain: str = "qa"
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> QADataset:
        """The questions at `indices`, same name and metadata."""
        idx = [int(i) for i in indices]
        pick = lambda values: [values[i] for i in idx]  # noqa: E731
        return QADataset(name=self.name, texts=pick(self.texts), answers=pick(self.answers), groups=pick(self.groups),
                         kinds=pick(self.kinds), roles=pick(self.roles), frequency=self.frequency[idx],
                         split=self.split, domain=self.domain, metadata=self.metadata)

    def __repr__(self) -> str:
        roles = {r: self.roles.count(r) for r in sorted(set(self.roles))}
        return f"QADataset({self.name!r}, split={self.split!r}, n={len(self)}, roles={roles})"

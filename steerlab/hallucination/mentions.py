"""Checking free-text answers against a fact table: the first answer mention, and the tokens it covers.

Real models answer in sentences ("The city of Krasnodar is located in the Russian
Federation, which is..."), not in a single entity token. Following the entity-span labels of
Obeso et al. ("Real-Time Detection of Hallucinated Entities in Long-Form Generation") and
Liang & Wang ("Neural Probe-Based Hallucination Detection for Large Language Models"), an
answer is checked through the entity it names:

1. :class:`MentionTable`: every name of every possible answer (a country's short and long
   names, abbreviations, adjectives; see :mod:`steerlab.hallucination.countries`), each mapped to
   the answer(s) it names, plus phrases that are read past ("South China Sea");
2. :func:`token_spans`: the characters of the decoded answer that each generated token produced
   (by decoding growing prefixes, so byte-level BPE ``Ġ`` and SentencePiece ``▁`` tokens are
   handled by the tokenizer itself);
3. :func:`check_answers`: the answer's claim is its FIRST mention (the asked entity's own name
   masked out: "Benin City" names no country). Right when the mention names the reference,
   wrong when it names another answer (its tokens are labelled 1, the tokens before it 0),
   ``"none"`` when the answer names nothing in the table (or, given a ``claim_pattern``, wrong
   when that pattern finds a claimed answer nobody accepts: "The capital of Mali is KADAMA.").
   Tokens after the mention are unchecked and left out (:func:`checked_answers`).

Example:
    >>> table = MentionTable({"France": ["France"], "French": ["France"], "Japan": ["Japan"]})
    >>> table.find("It is a French city, not in Japan.")
    Mention(text='French', start=8, end=14, canonical=frozenset({'France'}))
    >>> table.same("French", "France"), table.same("Japan", "France")
    (True, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

OUTCOMES = ("right", "wrong", "none")


@dataclass(frozen=True)
class Mention:
    """One name found in a text: ``text[start:end]`` names the answer(s) in ``canonical``."""

    text: str
    start: int
    end: int
    canonical: frozenset[str]


class MentionTable:
    """The names of the possible answers to one kind of question.

    Args:
        names: ``{name: answers it names}`` (one canonical answer, or several for a shared name such
            as "Korean").
        not_answers: phrases holding a name that name no answer ("South China Sea"): read past.
        case_sensitive: match names with their case (True for proper nouns).
        strip_articles: leading words dropped from a reference before it is looked up
            (``"the "``: "the United States" is "United States").

    Matching is on whole words, the earliest mention first and, at one position, the longest
    name (so "Democratic Republic of the Congo" is not read as "Republic of the Congo").
    """

    def __init__(self, names: Mapping[str, Iterable[str]], *, not_answers: Sequence[str] = (),
                 case_sensitive: bool = True, strip_articles: Sequence[str] = ()):
        if not names:
            raise ValueError("names is empty: pass {name: [answer, ...]} for every possible answer.")
        self.case_sensitive = case_sensitive
        self.strip_articles = tuple(strip_articles)
        self.names = {self._key(name): frozenset(answers) for name, answers in names.items()}
        self.not_answers = frozenset(self._key(phrase) for phrase in not_answers)
        forms = sorted({*names, *not_answers}, key=lambda form: (-len(form), form))
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, forms)) + r")(?!\w)",
                                   0 if case_sensitive else re.IGNORECASE)

    @classmethod
    def from_accepted(cls, accepted: Sequence[Sequence[str]], *, extra: Iterable[str] = (),
                      not_answers: Sequence[str] = (), case_sensitive: bool = False) -> "MentionTable":
        """A table from each question's accepted spellings (its answer first, then aliases): a spelling names
        the answer of every question that accepts it; ``extra`` names other possible (wrong) answers,
        each naming itself (e.g. every city, so that "The capital of Australia is Sydney" is checkable)."""
        names: dict[str, set[str]] = {}
        for spellings in accepted:
            if not spellings:
                raise ValueError("A question has no accepted answer: every question needs at least one.")
            for spelling in spellings:
                names.setdefault(spelling, set()).add(spellings[0])
        for name in extra:
            names.setdefault(name, {name})
        return cls(names, not_answers=not_answers, case_sensitive=case_sensitive)

    def _key(self, name: str) -> str:
        return name if self.case_sensitive else name.lower()

    def canonical(self, name: str) -> frozenset[str]:
        """The answer(s) a name names; a ValueError for a name the table does not hold."""
        for article in ("", *self.strip_articles):
            if name.startswith(article) and self._key(name[len(article):]) in self.names:
                return self.names[self._key(name[len(article):])]
        raise ValueError(f"{name!r} is not a name in this table ({len(self.names)} names): add it, or check the "
                         "spelling of the reference answer.")

    def same(self, name: str, other: str) -> bool:
        """Whether two names can name the same answer."""
        return bool(self.canonical(name) & self.canonical(other))

    @staticmethod
    def mask(text: str, masks: Sequence[str] = ()) -> str:
        """``text`` with the FIRST whole-word occurrence of each mask (case-insensitive) blanked out, offsets kept:
        the answer's echo of the question ("The capital of Kuwait is Kuwait City" keeps "Kuwait City")."""
        for mask in masks:
            if mask:
                text = re.sub(r"(?<!\w)" + re.escape(mask) + r"(?!\w)", lambda m: " " * len(m.group()), text,
                              count=1, flags=re.IGNORECASE)
        return text

    def find(self, text: str, masks: Sequence[str] = ()) -> Mention | None:
        """The first mention of an answer in ``text`` (None when there is none), after :meth:`mask`."""
        for match in self._pattern.finditer(self.mask(text, masks)):
            key = self._key(match.group())
            if key in self.names:
                return Mention(match.group(), match.start(), match.end(), self.names[key])
        return None

    def __repr__(self) -> str:
        answers = len(set().union(*self.names.values()))
        return (f"MentionTable({len(self.names)} names of {answers} answers, {len(self.not_answers)} phrases read "
                f"past, case_sensitive={self.case_sensitive})")


def token_spans(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """``(text, [(start, end)] per token)``: the decoded answer and the characters each token produced.

    Token ``k`` covers ``decode(ids[:k]) .. decode(ids[:k + 1])`` (special tokens skipped). When a prefix
    does not decode to a prefix of the text (a multi-byte character split across tokens), the token's
    span starts where the previous one ended.
    """
    def decode(part: Sequence[int]) -> str:
        return tokenizer.decode(list(part), skip_special_tokens=True, clean_up_tokenization_spaces=False)

    text = decode(ids)
    spans, end = [], 0
    for k in range(1, len(ids) + 1):
        prefix = decode(ids[:k])
        start = end
        if text.startswith(prefix):
            end = max(end, len(prefix))
        spans.append((start, end))
    return text, spans


class Claim(NamedTuple):
    """The check of one answer.

    Attributes:
        outcome: ``"right"``, ``"wrong"`` or ``"none"`` (names no answer in the table).
        mention: the first mention (None for ``"none"``).
        text: the decoded answer.
        n_checked: leading tokens the check covers: through the mention's last token (every token for ``"none"``).
        labels: ``[n_checked]`` 0/1: the mention's tokens are 1 when it is wrong; every token is 1 for ``"none"``.
    """

    outcome: str
    mention: Mention | None
    text: str
    n_checked: int
    labels: np.ndarray


def check_answers(tokenizer: Any, answer_ids: Sequence[Sequence[int]], references: Sequence[str | Sequence[str]],
                  table: MentionTable, masks: Sequence[Sequence[str]] | None = None,
                  claim_pattern: str | re.Pattern | None = None) -> list[Claim]:
    """Check each generated answer against its reference through its first mention.

    Args:
        tokenizer: the model's tokenizer (decodes the ids; BPE and SentencePiece alike).
        answer_ids: ``[n_answers]`` the generated ids of each answer (``GeneratedTokens.answer_token_ids``).
        references: the right answer of each question, or its accepted spellings (right when the mention
            names any of them).
        table: the names of the possible answers.
        masks: per answer, names to blank out before looking (the asked entity, which answers repeat; its
            first occurrence).
        claim_pattern: for answers that name nothing in the table, a regular expression whose first group is
            the claimed answer (e.g. ``r"\bis (?:the )?([^.,;(\n]+)"`` for "The capital of X is Kougou."): such
            an answer claims something no question accepts, so it is wrong and that group's tokens are labelled
            1. Without it (or when it does not match) the answer's outcome is ``"none"``.

    Returns:
        One :class:`Claim` per answer.
    """
    if not len(answer_ids) == len(references) == (len(masks) if masks is not None else len(references)):
        raise ValueError(f"Got {len(answer_ids)} answers, {len(references)} references"
                         + ("" if masks is None else f" and {len(masks)} masks")
                         + ": pass one of each per question.")
    claims = []
    for i, ids in enumerate(answer_ids):
        reference = [references[i]] if isinstance(references[i], str) else list(references[i])
        expected = frozenset().union(*(table.canonical(name) for name in reference))
        text, spans = token_spans(tokenizer, ids)
        mention = table.find(text, masks[i] if masks is not None else ())
        if mention is None and claim_pattern is not None:
            mention = _unknown_claim(table.mask(text, masks[i] if masks is not None else ()), claim_pattern)
        if mention is None:
            claims.append(Claim("none", None, text, len(ids), np.ones(len(ids), dtype=np.int64)))
            continue
        n_checked = next((k for k, (start, _) in enumerate(spans) if start >= mention.end), len(ids))
        right = bool(mention.canonical & expected)
        labels = np.array([int(not right and start < mention.end and end > mention.start)
                           for start, end in spans[:n_checked]], dtype=np.int64)
        if not right and not labels.any():  # a mention inside a token that produced no characters of its own
            labels[-1:] = 1
        claims.append(Claim("right" if right else "wrong", mention, text, n_checked, labels))
    return claims


def _unknown_claim(text: str, pattern: str | re.Pattern) -> Mention | None:
    """The claimed answer that ``pattern``'s first group marks in ``text`` (stripped), naming no known answer."""
    match = re.search(pattern, text)
    if match is None or not match.group(1).strip():
        return None
    start = match.start(1) + len(match.group(1)) - len(match.group(1).lstrip())
    claimed = match.group(1).strip()
    return Mention(claimed, start, start + len(claimed), frozenset())


def checked_answers(answer_ids: Sequence[Sequence[int]], claims: Sequence[Claim], keep_unanswered: bool = False
                    ) -> tuple[list[list[int]], np.ndarray]:
    """``(ids, labels)``: each answer's checked ids (empty for an answer naming nothing, unless
    ``keep_unanswered``) and the token labels of all of them concatenated, ``[n_tokens]``, in the row
    order of :func:`~steerlab.hallucination.generation.capture_token_ids` on those ids."""
    if len(answer_ids) != len(claims):
        raise ValueError(f"Got {len(answer_ids)} answers and {len(claims)} claims: pass one claim per answer.")
    kept = [claim.outcome != "none" or keep_unanswered for claim in claims]
    ids = [list(answer[:claim.n_checked]) if keep else [] for answer, claim, keep in zip(answer_ids, claims, kept)]
    labels = [claim.labels for claim, keep in zip(claims, kept) if keep and claim.n_checked]
    return ids, (np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64))

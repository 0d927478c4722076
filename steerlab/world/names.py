"""Pronounceable invented names for the demo world's entities.

Every name is one lowercase word, so the word-level tokenizer gives each entity
exactly one token (no name shares a prefix token with another, which keeps the
"which entity is this" question a pure lookup for the model).

Example:
    >>> import random
    >>> names = invent_names(random.Random(0), 3, taken=set())
    >>> len(names), all(n.isalpha() for n in names)
    (3, True)
"""

from __future__ import annotations

import random

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "k", "m")


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def invent_names(
    rng: random.Random,
    count: int,
    taken: set[str],
    syllables: tuple[int, ...] = (2, 3),
) -> list[str]:
    """Draw `count` distinct new names, none of them in `taken` (which is updated).

    `syllables` lists the allowed syllable counts; names of 2-3 syllables give
    ~10^6 possibilities, so collisions are rare and simply redrawn.
    """
    names: list[str] = []
    while len(names) < count:
        name = "".join(_syllable(rng) for _ in range(rng.choice(syllables)))
        if name in taken or len(name) < 4:
            continue
        taken.add(name)
        names.append(name)
    return names

"""Builders for the labelled and unlabelled statement forms, shared by the
training corpus and the evaluation datasets (so both use the same strings).

A statement is text without its final " ." (e.g. "varno is in keldar"). Forms:

- plain:    "varno is in keldar ."
- direct:   "varno is in keldar . true"          (verdict prompt: "varno is in keldar .")
- gap:      "varno is in keldar . we checked the map . that claim is true"
            (verdict prompt: everything before the verdict word)

Example:
    >>> direct_prompt("varno is in keldar")
    'varno is in keldar .'
    >>> gap_prompt("varno is in keldar", "we checked the map")
    'varno is in keldar . we checked the map . that claim is'
"""

from __future__ import annotations

from steerlab.world.templates import FALSE_WORD, GAP_VERDICT_TAIL, TRUE_WORD


def verdict_word(is_true: bool) -> str:
    """The word the model should emit for a statement of this truth value."""
    return TRUE_WORD if is_true else FALSE_WORD


def plain(statement: str) -> str:
    """The unlabelled sentence: statement plus full stop."""
    return f"{statement} ."


def direct_prompt(statement: str) -> str:
    """Text after which the model gives its verdict directly."""
    return f"{statement} ."


def gap_prompt(statement: str, filler: str) -> str:
    """Text with another sentence between the statement and the verdict slot."""
    return f"{statement} . {filler} . {GAP_VERDICT_TAIL}"


def with_verdict(prompt: str, is_true: bool) -> str:
    """A verdict prompt followed by its correct verdict word."""
    return f"{prompt} {verdict_word(is_true)}"

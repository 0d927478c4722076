"""Readouts: how a statement is put to a model, and which next tokens are its answer.

* :class:`VerdictReadout`: a question around a statement (zero- or few-shot, plain text or
  through the tokenizer's chat template) whose next token is a verdict word (``"True"`` /
  ``"False"``); :func:`verdict_margins` reads it, with a threshold that
  :func:`balanced_threshold` can calibrate on labelled statements.
* :func:`answer_gap` and :func:`gap_shift`: per prompt, ``log P(correct) - log P(incorrect)``
  of two given next tokens, and its mean change under steering: the causal test of Ying et
  al., "The Truthfulness Spectrum Hypothesis" (add ``alpha * direction`` at a layer and
  measure the change in ``log P(correct) - log P(incorrect)`` after ``"The city of X is in"``).

A verdict readout only measures steering when the unsteered model answers it both ways:
check :meth:`VerdictReadout.prompts` with ``logprob_difference`` before steering (SmolLM2
and Gemma-3 say " true" to every cities statement after ``" This statement is"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from steerlab.models.adapter import ModelAdapter
from steerlab.steering.metrics import last_token_logprobs, logprob_difference

Shot = tuple[str, bool]  # (statement, is_true)


def chat_prompt(tokenizer: Any, turns: Sequence[tuple[str, str | None]], assistant_prefix: str = "") -> str:
    """The chat-template text of ``turns`` (user, assistant) ending in an open assistant turn.

    The last turn's assistant text must be None: the template's generation prompt follows,
    then ``assistant_prefix`` (the first words of the answer, if any). Tokenize the result
    without adding special tokens again (the template wrote them).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("This tokenizer has no chat template: use VerdictReadout(chat=False) with few-shot "
                         "examples (shots=...) for a base model.")
    if not turns or turns[-1][1] is not None:
        raise ValueError("The last turn must be (user_text, None): the assistant's answer is what is read out.")
    messages: list[dict[str, str]] = []
    for user, assistant in turns:
        messages.append({"role": "user", "content": user})
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + assistant_prefix


@dataclass(frozen=True)
class VerdictReadout:
    """A statement put as a question; the verdict is the next token, ``positive`` vs ``negative``.

    Attributes:
        question: the question text with a ``{statement}`` placeholder.
        positive, negative: the verdict tokens exactly as they follow the prompt (one token each: ``" true"``
            after ``"... This statement is"``, ``"True"`` opening a chat answer).
        chat: wrap through the tokenizer's chat template (shots become earlier turns).
        shots: few-shot examples ``(statement, is_true)`` answered before the statement.
        assistant_prefix: text the answer starts with (chat), or that follows the question (plain).
        threshold: the verdict is positive when ``log P(positive) - log P(negative) > threshold``. 0 is
            the model's own verdict; :func:`balanced_threshold` on labelled calibration statements gives
            a calibrated one (as "Calibrate Before Use", Zhao et al.) for a model that leans one way.

    Example:
        >>> readout = VerdictReadout("Statement: {statement}\\nTrue or false?", " True", " False",
        ...                          shots=(("Paris is in France.", True),))
        >>> print(readout.prompts(None, ["Rome is in Peru."])[0])
        Statement: Paris is in France.
        True or false? True
        <BLANKLINE>
        Statement: Rome is in Peru.
        True or false?
    """

    question: str
    positive: str
    negative: str
    chat: bool = False
    shots: tuple[Shot, ...] = ()
    assistant_prefix: str = ""
    threshold: float = 0.0

    def __post_init__(self) -> None:
        if "{statement}" not in self.question:
            raise ValueError(f"The question needs a {{statement}} placeholder, got {self.question!r}.")
        object.__setattr__(self, "shots", tuple((str(text), bool(label)) for text, label in self.shots))

    def answer(self, is_true: bool) -> str:
        return self.positive if is_true else self.negative

    def prompts(self, tokenizer: Any, statements: Sequence[str]) -> list[str]:
        """One prompt per statement; its next token is the verdict."""
        if isinstance(statements, str):
            raise TypeError("statements must be a list of strings: wrap one as [statement].")
        if self.chat:
            history = [(self.question.format(statement=text), self.assistant_prefix + self.answer(label).strip())
                       for text, label in self.shots]
            return [chat_prompt(tokenizer, history + [(self.question.format(statement=text), None)],
                                self.assistant_prefix) for text in statements]
        context = "".join(f"{self.question.format(statement=text)}{self.assistant_prefix}{self.answer(label)}\n\n"
                          for text, label in self.shots)
        return [f"{context}{self.question.format(statement=text)}{self.assistant_prefix}" for text in statements]


def verdict_margins(model: ModelAdapter, readout: VerdictReadout, prompts: Sequence[str],
                    batch_size: int = 8) -> torch.Tensor:
    """``[n_prompts]``: ``log P(positive) - log P(negative) - readout.threshold`` (> 0: judged positive)."""
    gaps = logprob_difference(model, list(prompts), readout.positive, readout.negative, batch_size=batch_size,
                              exact=True)  # the readout's words are the exact next tokens ("True" in a chat answer)
    return gaps - readout.threshold


def balanced_threshold(gaps: torch.Tensor, labels: Sequence[int]) -> float:
    """The threshold on ``gaps [n]`` with the best balanced accuracy for ``labels`` (1 = positive).

    Candidates are midpoints between sorted gaps (and 0); ties go to the one nearest 0, so a
    readout the model already answers well keeps its own verdict.
    """
    gaps = torch.as_tensor(gaps, dtype=torch.float64)
    labels = torch.as_tensor(list(labels), dtype=torch.bool)
    if len(gaps) != len(labels) or labels.all() or not labels.any():
        raise ValueError("balanced_threshold needs one label per gap and both labels present.")
    ordered = gaps.sort().values
    candidates = torch.cat([torch.zeros(1, dtype=gaps.dtype), (ordered[1:] + ordered[:-1]) / 2,
                            ordered[:1] - 1, ordered[-1:] + 1])
    judged = gaps[None, :] > candidates[:, None]  # [n_candidates, n]
    balanced = (judged[:, labels].double().mean(1) + (~judged[:, ~labels]).double().mean(1)) / 2
    best = balanced.max()
    near = candidates[(balanced >= best - 1e-12)]
    return float(near[near.abs().argmin()])


def first_token_ids(tokenizer: Any, continuations: Sequence[str]) -> torch.Tensor:
    """``[n]``: the id of the first token of each continuation as it follows a prompt (e.g. ``" Russia"``)."""
    ids = []
    for text in continuations:
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise ValueError(f"The continuation {text!r} has no tokens.")
        ids.append(tokens[0])
    return torch.tensor(ids, dtype=torch.long)


def answer_gap(model: ModelAdapter, prompts: Sequence[str], correct_ids: torch.Tensor, incorrect_ids: torch.Tensor,
               batch_size: int = 16) -> torch.Tensor:
    """``[n_prompts]``: ``log P(correct_ids[i]) - log P(incorrect_ids[i])`` as the next token after prompt i."""
    correct_ids, incorrect_ids = torch.as_tensor(correct_ids), torch.as_tensor(incorrect_ids)
    if not len(prompts) == len(correct_ids) == len(incorrect_ids):
        raise ValueError(f"Got {len(prompts)} prompts, {len(correct_ids)} correct and {len(incorrect_ids)} incorrect "
                         "token ids: give one of each per prompt.")
    logprobs = last_token_logprobs(model, list(prompts), batch_size)
    rows = torch.arange(len(prompts))
    return logprobs[rows, correct_ids] - logprobs[rows, incorrect_ids]


def gap_shift(model: ModelAdapter, prompts: Sequence[str], correct_ids: torch.Tensor, incorrect_ids: torch.Tensor,
              batch_size: int = 16):
    """An efficacy for ``steering_sweep`` / ``evaluate``: the mean change of :func:`answer_gap` from the unsteered model.

    The unsteered gaps are measured now (call it outside any ``steer`` block). Positive means
    steering raised the correct answer against the incorrect one (nats).
    """
    baseline = answer_gap(model, prompts, correct_ids, incorrect_ids, batch_size)

    def efficacy(steered_model: ModelAdapter) -> float:
        return float((answer_gap(steered_model, prompts, correct_ids, incorrect_ids, batch_size) - baseline).mean())
    return efficacy

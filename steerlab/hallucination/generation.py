"""Capture the model's own answers: generate, then read every generated token's hidden states.

Token-level hallucination probes (Liang & Wang, arXiv 2512.20949; Obeso et al., arXiv
2509.03531) read the hidden state at EACH token the model generated. Here the answers are
generated greedily (KV cache, left padding), then prompt + answer is run once more
(right padding, no cache) to read the states: exact, since a causal model's state at a
position depends only on the tokens up to it (tests check it against the states seen
during generation to 1e-4). The same forward gives the next-token distribution that
produced each token, for the output-confidence baselines (1 - max probability, entropy).

Two states belong to each generated token: its own (``hidden``: the token as input, what
the papers probe) and the *producing* state one position earlier (``producing``: the
state whose next-token distribution chose it, where the model's uncertainty lives).
``GeneratedTokens.features(layer, state="both", confidence=True)`` concatenates them and
the two output-confidence numbers. On the demo model an MLP on them is well above the token
state alone (answer AUROC 0.905 vs 0.837, cross-validated on the train split) but only level
with output confidence (0.906); combined with the output's odds
(:func:`~steerlab.hallucination.evaluation.with_output_odds`) it beats confidence (0.930; on
the test split 0.946 vs 0.901; ``benchmarks/results_hallucination.md``).

Example:
    >>> import steerlab
    >>> from steerlab.hallucination import generate_and_capture
    >>> model = steerlab.load_model("demo")                                      # doctest: +SKIP
    >>> gen = generate_and_capture(model, ["q : where is bakli ? a :"], progress=False)  # doctest: +SKIP
    >>> gen.tokens, gen.hidden.shape                                             # doctest: +SKIP
    (['sokdrouk', '.'], torch.Size([2, 4, 128]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from steerlab.models.adapter import ModelAdapter
from steerlab.models.tokenization import encode, pad
from steerlab.sites import resolve_layers, validate_site


@dataclass
class GeneratedTokens:
    """The generated tokens of many answers, one row per token (n = total generated tokens).

    Attributes:
        prompts: [n_answers] the prompts.
        answers: [n_answers] decoded answer text (special tokens dropped).
        answer_token_ids: [n_answers] the generated ids of each answer (stop token excluded).
        hidden: [n, n_layers, d_model] float32 hidden states at ``site`` of each token.
        producing: [n, n_layers, d_model] the states one position earlier, which produced each token.
        layers, site: where ``hidden`` was read (``hidden[:, i]`` is layer ``layers[i]``).
        token_ids: [n] int64; tokens: [n] token strings.
        answer_index: [n] which answer each token belongs to (the span / group id).
        position: [n] index of the token inside its answer (0 = first generated).
        max_prob: [n] max probability of the next-token distribution that produced the token.
        entropy: [n] entropy (nats) of that distribution.
        token_prob: [n] probability given to the token itself (= max_prob when greedy).
    """

    prompts: list[str]
    answers: list[str]
    answer_token_ids: list[list[int]]
    hidden: torch.Tensor
    producing: torch.Tensor
    layers: list[int]
    site: str
    token_ids: np.ndarray
    tokens: list[str]
    answer_index: np.ndarray
    position: np.ndarray
    max_prob: np.ndarray
    entropy: np.ndarray
    token_prob: np.ndarray
    model_name: str = ""
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_answers(self) -> int:
        return len(self.prompts)

    def layer(self, layer: int) -> torch.Tensor:
        """Hidden states of one captured layer, ``[n, d_model]``."""
        if layer not in self.layers:
            raise ValueError(f"Layer {layer} was not captured (captured: {self.layers}); capture it with layers=[...].")
        return self.hidden[:, self.layers.index(layer)]

    def features(self, layer: int, state: str = "token", confidence: bool = False) -> torch.Tensor:
        """Probe inputs at one layer: ``"token"`` ``[n, d]`` (the token's own state, as in the papers),
        ``"producing"`` ``[n, d]`` (the state that predicted it) or ``"both"`` ``[n, 2d]`` (token, producing);
        with ``confidence``, two more columns: ``max_prob`` and ``entropy``."""
        own = self.layer(layer)
        producing = self.producing[:, self.layers.index(layer)]
        scores = torch.as_tensor(np.stack([self.max_prob, self.entropy], axis=1), dtype=own.dtype)
        return probe_features(own, producing, scores if confidence else None, state)

    def select(self, rows: Sequence[int] | np.ndarray) -> "GeneratedTokens":
        """The token rows ``rows`` (e.g. one split's), every per-token field cut alike; the per-answer fields
        (prompts, answers) and ``answer_index`` values are kept, so answers keep their ids."""
        import dataclasses

        rows = np.asarray(rows, dtype=np.int64)
        per_row = {key: getattr(self, key)[torch.as_tensor(rows) if key in ("hidden", "producing") else rows]
                   for key in ("hidden", "producing", "token_ids", "answer_index", "position", "max_prob", "entropy",
                               "token_prob")}
        return dataclasses.replace(self, tokens=[self.tokens[r] for r in rows], **per_row)

    def all_layer_features(self, state: str = "token", confidence: bool = False) -> torch.Tensor:
        """:meth:`features` at every captured layer: ``[n, n_layers, width]`` (for layer searches)."""
        return torch.stack([self.features(layer, state, confidence) for layer in self.layers], dim=1)

    def __repr__(self) -> str:
        return (f"GeneratedTokens(n_answers={self.n_answers}, n_tokens={len(self)}, layers={self.layers}, "
                f"site={self.site!r}, model={self.model_name!r})")


def generate_and_capture(adapter: ModelAdapter, prompts: Sequence[str], *, layers: int | Sequence[int] | None = None,
                         site: str = "resid_post", max_new_tokens: int = 8, batch_size: int = 64,
                         progress: bool = True, chat_template: bool = False) -> GeneratedTokens:
    """Greedy answers to ``prompts`` and the hidden states of every generated token.

    Args:
        adapter: the model (any backend).
        prompts: the questions; each answer is generated greedily.
        layers: layers to read (None = all; negative count from the end).
        site: ``resid_post`` (default), ``resid_pre``, ``resid_mid``, ``attn_out`` or ``mlp_out``.
        max_new_tokens: answer length limit; generation stops earlier at the EOS token,
            which is not kept as a row (it is no text).
        batch_size: prompts per generation / forward batch.
        progress: tqdm progress bar.
        chat_template: wrap each prompt as a user message of the tokenizer's chat template
            (with the generation prompt), as a chat model is asked.

    Returns:
        :class:`GeneratedTokens` with ``hidden [n_tokens, n_layers, d_model]``.
    """
    for layer in resolve_layers(layers, adapter.n_layers):  # fail before generating, not after
        adapter.point(validate_site(site), layer)
    prompt_ids, answer_ids = generate_answers(adapter, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                              progress=progress, chat_template=chat_template)
    return capture_token_ids(adapter, prompt_ids, answer_ids, prompts=prompts, layers=layers, site=site,
                             batch_size=batch_size, progress=progress)


def generate_answers(adapter: ModelAdapter, prompts: Sequence[str], *, max_new_tokens: int = 8, batch_size: int = 64,
                     progress: bool = True, chat_template: bool = False) -> tuple[list[list[int]], list[list[int]]]:
    """``(prompt_ids, answer_ids)``: the prompts' token ids and each greedy answer's ids up to (not including)
    the first stop token. Pass them (or the part of each answer you checked) to :func:`capture_token_ids`."""
    prompt_ids = encode(adapter.tokenizer, prompts, max_length=adapter.context_length, strict=True,
                        chat_template=chat_template)
    stop_ids = stop_token_ids(adapter)
    answer_ids: list[list[int]] = []
    with torch.no_grad():
        for start in tqdm(range(0, len(prompt_ids), batch_size), desc="generate", unit="batch", disable=not progress):
            batch = pad(prompt_ids[start:start + batch_size], pad_id=adapter.pad_token_id, side="left")
            new = adapter.generate_ids(batch, max_new_tokens=max_new_tokens).cpu()
            answer_ids += [_until_stop(row.tolist(), stop_ids) for row in new]
    return prompt_ids, answer_ids


def capture_answers(adapter: ModelAdapter, prompts: Sequence[str], answers: Sequence[str], *,
                    layers: int | Sequence[int] | None = None, site: str = "resid_post", batch_size: int = 64,
                    progress: bool = True) -> GeneratedTokens:
    """Like :func:`generate_and_capture` for answers you already have (e.g. annotated user data).

    Each answer is tokenised on its own without special tokens, exactly as
    :func:`~steerlab.hallucination.labels.spans_to_token_labels` tokenises it, so token labels
    from character spans line up with the rows.
    """
    if len(prompts) != len(answers):
        raise ValueError(f"Got {len(prompts)} prompts and {len(answers)} answers: pass one answer per prompt.")
    prompt_ids = encode(adapter.tokenizer, prompts, max_length=adapter.context_length, strict=True)
    answer_ids = [adapter.tokenizer(answer, add_special_tokens=False)["input_ids"] for answer in answers]
    return capture_token_ids(adapter, prompt_ids, answer_ids, prompts=prompts, layers=layers, site=site,
                             batch_size=batch_size, progress=progress)


def capture_token_ids(adapter: ModelAdapter, prompt_ids: list[list[int]], answer_ids: list[list[int]], *,
                      prompts: Sequence[str], layers: int | Sequence[int] | None = None, site: str = "resid_post",
                      batch_size: int = 64, progress: bool = True) -> GeneratedTokens:
    """Hidden states and producing distributions of every answer token, given prompt and answer ids."""
    validate_site(site)
    layer_list = resolve_layers(layers, adapter.n_layers)
    points = [adapter.point(site, layer) for layer in layer_list]
    rows: dict[str, list] = {key: [] for key in ("hidden", "producing", "token_ids", "answer_index", "position", "max_prob",
                                                   "entropy", "token_prob")}
    with torch.no_grad():
        for start in tqdm(range(0, len(prompt_ids), batch_size), desc="capture answers", unit="batch",
                          disable=not progress):
            stop = start + batch_size
            _read_answers(adapter, points, prompt_ids[start:stop], answer_ids[start:stop], start, rows)
    if not rows["hidden"]:
        raise ValueError("No answer has any token (the model stopped at once on every prompt): "
                         "nothing to capture; check the prompts or raise max_new_tokens.")
    token_ids = np.concatenate(rows["token_ids"]).astype(np.int64)
    return GeneratedTokens(
        prompts=list(prompts), answers=adapter.tokenizer.batch_decode(answer_ids, skip_special_tokens=True),
        answer_token_ids=[list(ids) for ids in answer_ids], hidden=torch.cat(rows["hidden"]),
        producing=torch.cat(rows["producing"]), layers=layer_list,
        site=site, token_ids=token_ids, tokens=adapter.tokenizer.convert_ids_to_tokens(token_ids.tolist()),
        **{key: np.concatenate(rows[key]) for key in ("answer_index", "position", "max_prob", "entropy", "token_prob")},
        model_name=adapter.name)


def forward_answers(adapter: ModelAdapter, points: list, prompt_ids: list[list[int]], answers: list[list[int]]
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Per answer: hidden ``[len, n_points, d]`` of its tokens, the producing states ``[len, n_points, d]``
    and the logits ``[len, vocab]`` that produced them (float32, on the CPU).

    One right-padded forward of prompt + answer; position ``P + j`` holds answer token ``j``,
    position ``P + j - 1`` the state and distribution it was drawn from. Only those rows are
    copied to the CPU, picked on the model's device: the prompts' other positions and the
    padding never leave it (at a 128k vocabulary, the full ``[batch, pos, vocab]`` logits in
    float32 would be tens of GB).
    """
    full = [p + a for p, a in zip(prompt_ids, answers)]
    batch = pad(full, pad_id=adapter.pad_token_id, side="right")
    # (example, position) of P - 1 .. P + len - 1 for each answer: its tokens' producing states and own states
    sizes = [len(answer) + 1 for answer in answers]
    example = torch.repeat_interleave(torch.arange(len(answers)), torch.tensor(sizes))
    position = torch.cat([torch.arange(len(prompt) - 1, len(prompt) + len(answer))
                          for prompt, answer in zip(prompt_ids, answers)])
    producing = torch.ones(len(example), dtype=torch.bool)  # every position but each answer's last
    producing[torch.tensor(sizes).cumsum(0) - 1] = False
    states: list[torch.Tensor] = [None] * len(points)  # type: ignore[list-item]

    def rows(values: torch.Tensor, keep: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        """``values[example, position]`` (where ``keep``), picked on ``values``' device, then CPU float32."""
        device = values.device
        return values[example[keep].to(device), position[keep].to(device)].detach().to("cpu", torch.float32)

    def read(slot: int):
        def fn(activation: torch.Tensor) -> None:
            states[slot] = rows(activation)
        return fn

    logits = adapter.forward(batch, [(point, read(slot)) for slot, point in enumerate(points)])
    spans = torch.stack(states, dim=1).split(sizes)  # per answer [len + 1, n_points, d]
    produced = rows(logits, producing).split([size - 1 for size in sizes])  # per answer [len, vocab]
    return [span[1:] for span in spans], [span[:-1] for span in spans], list(produced)


def _read_answers(adapter: ModelAdapter, points: list, prompt_ids: list[list[int]], answers: list[list[int]],
                  first_index: int, rows: dict[str, list]) -> None:
    keep = [i for i, answer in enumerate(answers) if answer]  # an answer that is only EOS has no token rows
    if not keep:
        return
    hidden, producing, produced = forward_answers(adapter, points, [prompt_ids[i] for i in keep],
                                                  [answers[i] for i in keep])
    for i, states, before, logits in zip(keep, hidden, producing, produced):
        log_p = torch.log_softmax(logits, dim=-1)
        max_prob, entropy = next_token_confidence(logits)
        ids = torch.tensor(answers[i])
        rows["hidden"].append(states)
        rows["producing"].append(before)
        rows["token_ids"].append(ids.numpy())
        rows["answer_index"].append(np.full(len(ids), first_index + i, dtype=np.int64))
        rows["position"].append(np.arange(len(ids), dtype=np.int64))
        rows["max_prob"].append(max_prob.numpy())
        rows["entropy"].append(entropy.numpy())
        rows["token_prob"].append(log_p.gather(-1, ids[:, None])[:, 0].exp().numpy())


STATES = ("token", "producing", "both")


def probe_features(own: torch.Tensor, producing: torch.Tensor, confidence: torch.Tensor | None,
                   state: str) -> torch.Tensor:
    """``own`` / ``producing`` ``[n, d]`` (+ ``confidence`` ``[n, 2]``) -> the probe input for ``state``."""
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}.")
    parts = {"token": [own], "producing": [producing], "both": [own, producing]}[state]
    return torch.cat(parts + ([confidence] if confidence is not None else []), dim=-1)


def next_token_confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, vocab]`` logits -> ``(max probability [n], entropy in nats [n])`` of each distribution."""
    probs = torch.log_softmax(logits.float(), dim=-1).exp()
    return probs.max(-1).values, -torch.special.xlogy(probs, probs).sum(-1)


def stop_token_ids(adapter: ModelAdapter) -> set[int]:
    """Ids that end an answer: the tokenizer's EOS and the generation config's EOS id(s)."""
    eos = adapter.tokenizer.eos_token_id
    config_eos = getattr(getattr(adapter.hf_model, "generation_config", None), "eos_token_id", None)
    found = set()
    for value in (eos, config_eos):
        found |= set(value) if isinstance(value, (list, tuple)) else ({value} if value is not None else set())
    return found


def _until_stop(ids: list[int], stop_ids: set[int]) -> list[int]:
    """Generated ids up to (not including) the first stop token."""
    for i, token in enumerate(ids):
        if token in stop_ids:
            return ids[:i]
    return ids

"""Live scoring: a hallucination score for each token as the model generates it.

Streams ``(token, P(hallucinated))`` pairs (Liang & Wang, arXiv 2512.20949; Obeso et al.,
arXiv 2509.03531 run their probes the same way, token by token during generation).
Decoding is greedy and each step runs one forward pass of the whole sequence so far
through :meth:`ModelAdapter.forward`: the site function that reads the hidden state is
attached for that forward only, so no hook outlives a step, whether the caller consumes
the stream, stops early or an exception is raised. The scores equal the offline ones
(:func:`~steerlab.hallucination.generation.generate_and_capture` + ``probe.predict_proba``)
on the same tokens. Without a KV cache the cost grows with the square of the answer
length: meant for answers of tens of tokens.

Example:
    >>> import steerlab
    >>> from steerlab.hallucination import stream_scores
    >>> model = steerlab.load_model("demo")                                          # doctest: +SKIP
    >>> for token, score in stream_scores(model, probe, "q : where is bakli ? a :", layer=3):  # doctest: +SKIP
    ...     print(f"{token} {score:.2f}")
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from steerlab.hallucination.evaluation import with_output_odds
from steerlab.hallucination.generation import STATES, next_token_confidence, probe_features, stop_token_ids
from steerlab.models.adapter import ModelAdapter
from steerlab.models.tokenization import encode, pad


def stream_scores(adapter: ModelAdapter, probe: Any, prompt: str, *, layer: int | None = None,
                  site: str | None = None, state: str = "token", confidence: bool = False,
                  with_output_odds: bool = False, max_new_tokens: int = 20) -> Iterator[tuple[str, float]]:
    """Yield ``(token, P(hallucinated))`` for each greedily generated token, as soon as it is scored.

    Args:
        adapter: the model.
        probe: a fitted token probe (``predict_proba`` on ``[n, d_model]``) for ``site`` at ``layer``.
        prompt: the question.
        layer, site: where the probe reads the hidden state. Default: the ``probe.layer`` / ``probe.site``
            the probe records (site ``resid_post`` when it records none); a value that contradicts the
            probe's record is an error.
        state, confidence: what the probe was fitted on (``GeneratedTokens.features``): ``"token"``,
            ``"producing"`` or ``"both"``, with or without the two output-confidence columns.
        with_output_odds: combine the probe's score with the output's ``1 - max probability``
            (:func:`~steerlab.hallucination.evaluation.with_output_odds`), as steerlab's detector does.
        max_new_tokens: stop after this many tokens (or at the EOS token, which is not yielded).

    The layer and site are checked when this is called, before the first token is generated.
    """
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}.")
    point = adapter.point(*probe_site(probe, layer, site, adapter.n_layers))
    return _stream(adapter, probe, prompt, point, state, confidence, with_output_odds, max_new_tokens)


def _stream(adapter: ModelAdapter, probe: Any, prompt: str, point: Any, state: str, confidence: bool,
            output_odds: bool, max_new_tokens: int) -> Iterator[tuple[str, float]]:
    """The generator behind :func:`stream_scores`, reading at ``point``."""
    ids = encode(adapter.tokenizer, [prompt], max_length=adapter.context_length, strict=True)[0]
    stop_ids = stop_token_ids(adapter)
    pending: int | None = None  # generated, not yet scored
    for step in range(max_new_tokens + 1):
        seen: dict[str, torch.Tensor] = {}

        def read_last(activation: torch.Tensor) -> None:  # the newest token's state and the one that produced it
            last_two = activation[0, -2:].detach().to("cpu", torch.float32)
            seen["producing"], seen["own"] = last_two[:1], last_two[1:]

        with torch.no_grad():
            logits = adapter.forward(pad([ids], pad_id=adapter.pad_token_id, side="right"), [(point, read_last)])
        if pending is not None:
            max_prob, entropy = next_token_confidence(producing_logits)
            features = probe_features(seen["own"], seen["producing"],
                                      torch.stack([max_prob, entropy], dim=-1) if confidence else None, state)
            score = probe.predict_proba(features.numpy())[:, 1]
            score = float((with_output_odds(score, max_prob.numpy()) if output_odds else score)[0])
            yield adapter.tokenizer.convert_ids_to_tokens(pending), score
        if step == max_new_tokens:
            return
        producing_logits = logits[0, -1:].to("cpu", torch.float32)  # the distribution the next token comes from
        pending = int(producing_logits.argmax())
        if pending in stop_ids:
            return
        ids = ids + [pending]


def probe_site(probe: Any, layer: int | None, site: str | None, n_layers: int) -> tuple[str, int]:
    """``(site, layer)`` to read for ``probe``: the arguments, else what the probe records; a clash is an error."""
    from steerlab.sites import resolve_layer

    recorded_layer, recorded_site = getattr(probe, "layer", None), getattr(probe, "site", None)
    if layer is None:
        if recorded_layer is None:
            raise ValueError("The probe records no layer (probe.layer is None): pass layer=..., the layer it was "
                             "fitted on.")
        layer = recorded_layer
    layer = resolve_layer(layer, n_layers)
    if recorded_layer is not None and resolve_layer(recorded_layer, n_layers) != layer:
        raise ValueError(f"layer={layer} but the probe was fitted on layer {recorded_layer} (probe.layer): "
                         "leave layer out to use the probe's, or pass the matching one.")
    site = site or recorded_site or "resid_post"
    if recorded_site is not None and site != recorded_site:
        raise ValueError(f"site={site!r} but the probe was fitted on site {recorded_site!r} (probe.site): "
                         "leave site out to use the probe's, or pass the matching one.")
    return site, layer
